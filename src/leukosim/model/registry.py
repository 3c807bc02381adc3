"""The parameter registry: every population parameter of every mechanism, in one ordered table, and
the :class:`ParameterSet` that carries values through a run."""

from __future__ import annotations


import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from . import (
    b_lineage, blinatumomab, car_t, chemotherapy, disease, inotuzumab, latent, t_cells, toxicity, transplant,
)
from .parameter import Parameter

__all__ = ["PARAMETERS", "INDEX", "CALIBRATABLE", "ParameterSet", "ParameterSetError", "default_parameters",
           "literature_parameters", "load_parameter_set", "shipped_parameter_sets", "LITERATURE", "DEFAULT"]

LITERATURE = "literature-0.1"
#: The shipped calibrated set (``leukosim/parameter_sets/<DEFAULT>.json``); the default when present.
DEFAULT = "calibrated-0.23"

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
    + latent.PARAMETERS
)
INDEX: MappingProxyType[str, int] = MappingProxyType({p.name: i for i, p in enumerate(PARAMETERS)})
if len(INDEX) != len(PARAMETERS):
    raise RuntimeError("duplicate parameter names in the registry")
#: Names of the parameters calibration may move, in registry order.
CALIBRATABLE: tuple[str, ...] = tuple(p.name for p in PARAMETERS if p.calibrate)


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


class ParameterSetError(ValueError):
    """A parameter-set file that cannot be used, with the file and field at fault."""


def literature_parameters() -> ParameterSet:
    """The literature (uncalibrated) parameter set: every value as its source gives it."""
    return ParameterSet(LITERATURE, tuple(p.value for p in PARAMETERS))


def _shipped_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "parameter_sets"


def shipped_parameter_sets() -> list[str]:
    """Names of the parameter sets shipped with leukosim (the literature set first, then by version:
    calibrated-0.9 before calibrated-0.10)."""
    def version(name: str) -> list[tuple[int, str]]:
        return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]
    return [LITERATURE, *sorted((path.stem for path in _shipped_dir().glob("*.json")), key=version)]


def parameter_set_file(source: str | Path) -> Path:
    """The file of a shipped calibrated set named ``source``, else ``source`` as a path."""
    if isinstance(source, str) and source != LITERATURE and source in shipped_parameter_sets():
        return _shipped_dir() / f"{source}.json"
    return Path(source)


def load_parameter_set(source: str | Path) -> ParameterSet:
    """A parameter set by name (see :func:`shipped_parameter_sets`) or from a JSON file holding ``name`` and
    ``values`` (parameter name -> value in the registry's unit; parameters not listed keep their literature
    value). Only calibratable parameters may differ from the literature set."""
    if isinstance(source, str) and source == LITERATURE:
        return literature_parameters()
    path = parameter_set_file(source)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ParameterSetError(f"{path}: cannot read ({error.strerror or error}); shipped sets: "
                                f"{', '.join(shipped_parameter_sets())}") from None
    except json.JSONDecodeError as error:
        raise ParameterSetError(f"{path}: not JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("name"), str) \
            or not isinstance(document.get("values"), dict):
        raise ParameterSetError(f"{path}: expected an object with 'name' (text) and 'values' (name -> number)")
    by_name = {p.name: p for p in PARAMETERS}
    values: dict[str, float] = {}
    for name, value in document["values"].items():
        parameter = by_name.get(name)
        if parameter is None:
            raise ParameterSetError(f"{path}: values.{name}: not a model parameter (see `leukosim params`)")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ParameterSetError(f"{path}: values.{name}: expected a finite number >= 0, got {value!r}")
        if not parameter.calibrate and value != parameter.value:
            raise ParameterSetError(f"{path}: values.{name}: a fixed (not calibratable) parameter cannot change")
        values[name] = float(value)
    return literature_parameters().replace(name=document["name"], **values)


@functools.cache
def default_parameters() -> ParameterSet:
    """The shipped calibrated parameter set, or the literature set if none is shipped."""
    if DEFAULT in shipped_parameter_sets():
        return load_parameter_set(DEFAULT)
    return literature_parameters()
