"""The run report: figures (:mod:`leukosim.report.figures`) and the self-contained HTML page
(:func:`write_report`)."""

from .html import REPORT, render_report, write_report

__all__ = ["write_report", "render_report", "REPORT"]
