"""The parameter record every mechanism declares: value, unit, source and whether calibration may move it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Parameter"]


@dataclass(frozen=True)
class Parameter:
    """One population (typical) parameter of the model.

    ``iiv_cv`` is the between-patient coefficient of variation of a log-normal random effect (0: none).
    ``source`` cites where the value comes from; the tags follow ``reference/model_literature.md``:
    [P] primary text, [S] secondary transcription, [D] derived arithmetic, [U] unconfirmed / assumption.
    """

    name: str
    value: float
    unit: str
    source: str
    calibrate: bool
    description: str
    iiv_cv: float = 0.0
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.iiv_cv < 0:
            raise ValueError(f"{self.name}: iiv_cv must be >= 0")
        if self.bounds is not None and not self.bounds[0] <= self.value <= self.bounds[1]:
            raise ValueError(f"{self.name}: value {self.value} outside its bounds {self.bounds}")
