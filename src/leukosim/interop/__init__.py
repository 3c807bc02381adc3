"""Exchange with other tools: the model as SBML."""

from .sbml import course_sbml, patient_sbml

__all__ = ["course_sbml", "patient_sbml"]
