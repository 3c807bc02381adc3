"""Calibration to published trials (:func:`calibrate`) and validation against them
(:func:`validation_table`)."""

from .fit import CalibrationSettings, calibrate, settings_from_file, write_parameter_set
from .validate import hit_fractions, therapy_class, validation_records, validation_table

__all__ = ["CalibrationSettings", "calibrate", "hit_fractions", "settings_from_file", "therapy_class",
           "validation_records", "validation_table", "write_parameter_set"]
