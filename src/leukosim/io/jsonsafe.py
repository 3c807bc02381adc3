"""Strict JSON from tables and reports: NaN and NA become null, infinities the strings "inf" / "-inf", numpy
scalars plain numbers (so ``json.dumps(..., allow_nan=False)`` never fails)."""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["json_safe"]


def json_safe(value: object) -> object:
    """A JSON-safe copy of ``value`` (dicts, lists and tuples converted recursively)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value
