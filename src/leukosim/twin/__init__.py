"""Patient digital twin: fit one patient's random effects to his NONMEM-style observations (MAP, population
prior, Laplace posterior) and forecast his outcomes under alternative protocols. Research use only."""

from .data import PatientData, PatientDataError, read_patient_data
from .fit import INFORMED_BY, RESIDUAL_SD, PatientFit, fit_patient
from .forecast import Forecast, forecast

__all__ = ["Forecast", "INFORMED_BY", "PatientData", "PatientDataError", "PatientFit", "RESIDUAL_SD", "fit_patient",
           "forecast", "read_patient_data"]
