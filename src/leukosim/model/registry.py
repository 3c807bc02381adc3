"""The parameter registry: every population parameter of every mechanism, in one ordered table, and
the :class:`ParameterSet` that carries values through a run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from . import b_lineage, blinatumomab, car_t, chemotherapy, disease, inotuzumab, t_cells, toxicity, transplant
from .parameter import Parameter

__all__ = ["PARAMETERS", "INDEX", "ParameterSet", "default_parameters"]

#: Mechanism order is fixed: appending a mechanism never moves existing indices.
PARAMETERS: tuple[Parameter, ...] = (
    disease.PARAMETERS
    + b_lineage.PARAMETERS
    + t_cells.PARAMETERS
    + car_t.PARAMETERS
    + blinatumomab.PARAMETERS
    + inotuzumab.PARAMETERS
    + chemotherapy.PARAMETERS
    + transplant.PARAMETERS
    + toxicity.PARAMETERS
)
INDEX: MappingProxyType[str, int] = MappingProxyType({p.name: i for i, p in enumerate(PARAMETERS)})
if len(INDEX) != len(PARAMETERS):
    raise RuntimeError("duplicate parameter names in the registry")


@dataclass(frozen=True)
class ParameterSet:
    """Typical (population) values of every registry parameter, with a name and a content hash."""

    name: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(PARAMETERS):
            raise ValueError(f"a parameter set needs {len(PARAMETERS)} values, got {len(self.values)}")

    def __getitem__(self, name: str) -> float:
        return self.values[INDEX[name]]

    def replace(self, name: str | None = None, **values: float) -> ParameterSet:
        """A copy with some values changed (unknown names raise KeyError)."""
        new = list(self.values)
        for key, value in values.items():
            if key not in INDEX:
                raise KeyError(f"unknown parameter {key!r}")
            new[INDEX[key]] = float(value)
        return ParameterSet(name or self.name, tuple(new))

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def hash(self) -> str:
        """sha256 of names and values: identifies the parameter set in run manifests."""
        text = "\n".join(f"{p.name}={v!r}" for p, v in zip(PARAMETERS, self.values))
        return hashlib.sha256(text.encode()).hexdigest()

    def records(self) -> list[dict[str, object]]:
        """One dict per parameter: name, value, unit, iiv_cv, calibrate, source, description."""
        return [
            {"name": p.name, "value": v, "unit": p.unit, "iiv_cv": p.iiv_cv, "calibrate": p.calibrate,
             "source": p.source, "description": p.description}
            for p, v in zip(PARAMETERS, self.values)
        ]


def default_parameters() -> ParameterSet:
    """The literature (uncalibrated) parameter set."""
    return ParameterSet("literature-0.1", tuple(p.value for p in PARAMETERS))
