"""The public entry point: simulate a protocol in a virtual population.

``simulate_trial(protocol, n_patients, seed)`` -> :class:`TrialResult`. Patients are processed in chunks;
every random draw is keyed by (seed, patient id), so results do not depend on the chunk size."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from .endpoints.outcomes import event_table, patient_table
from .endpoints.summary import arm_summary
from .engine.integrator import integrate_batch
from .engine.simulate import simulate_arm
from .model.registry import ParameterSet, default_parameters
from .population.covariates import draw_covariates
from .population.individual import individual_parameters
from .population.streams import Stream, uniforms
from .protocol.load import load_protocol, protocol_hash
from .protocol.schema import Protocol

__all__ = ["simulate_trial", "TrialResult", "assign_arms", "DEFAULT_CHUNK_SIZE"]

DEFAULT_CHUNK_SIZE = 20_000


@dataclass(frozen=True)
class TrialResult:
    """A simulated trial: one row per patient, one row per event, and what produced them."""

    protocol: Protocol
    parameters: ParameterSet
    seed: int
    patients: pd.DataFrame
    events: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    def summary(self) -> pd.DataFrame:
        """Main endpoints of each arm (see :func:`leukosim.endpoints.summary.arm_summary`)."""
        return arm_summary(self.protocol, self.patients)

    def manifest(self) -> dict[str, object]:
        """Provenance of the run: versions, seed, hashes, timings."""
        import numba
        import pyarrow
        import pydantic
        import scipy

        return {
            "leukosim_version": __version__,
            "protocol": self.protocol.name,
            "protocol_hash": protocol_hash(self.protocol),
            "parameter_set": self.parameters.name,
            "parameter_set_hash": self.parameters.hash(),
            "seed": self.seed,
            "n_patients": self.n_patients,
            "backend": "local",
            "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
                         "pandas": pd.__version__, "pyarrow": pyarrow.__version__,
                         "pydantic": pydantic.__version__},
            "timings_s": self.timings,
            "notice": "Research use only. Not a medical device; not advice for any individual patient.",
        }


def assign_arms(protocol: Protocol, seed: int, patient_ids: np.ndarray) -> np.ndarray:
    """Arm index of each patient: randomisation by the arms' allocation ratios."""
    weights = np.array([arm.allocation for arm in protocol.arms])
    bounds = np.cumsum(weights / weights.sum())
    u = uniforms(seed, patient_ids, Stream.block("arm"))
    return np.minimum(np.searchsorted(bounds, u, side="right"), len(protocol.arms) - 1)


def simulate_chunk(protocol: Protocol, parameters: ParameterSet, seed: int,
                   patient_ids: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients and events of the given patient ids."""
    covariates = draw_covariates(protocol.population, seed, patient_ids)
    p = individual_parameters(parameters, covariates, seed)
    arms = assign_arms(protocol, seed, patient_ids)
    patients, events = [], []
    for a, arm in enumerate(protocol.arms):
        members = np.flatnonzero(arms == a)
        if members.size == 0:
            continue
        course = simulate_arm(protocol, arm, covariates.take(members), p[members], parameters, seed)
        patients.append(patient_table(protocol, course))
        events.append(event_table(course))
    return (pd.concat(patients, ignore_index=True).sort_values("patient_id", kind="stable"),
            pd.concat(events, ignore_index=True))


def simulate_trial(protocol: Protocol | str | Path, n_patients: int, seed: int = 0,
                   parameters: ParameterSet | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   progress: Callable[[int], None] | None = None) -> TrialResult:
    """Simulate ``n_patients`` virtual patients on ``protocol`` (a Protocol, a bundled name or a YAML path)."""
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    if not isinstance(protocol, Protocol):
        protocol = load_protocol(protocol)
    parameters = parameters or default_parameters()
    compile_s = 0.0
    if not integrate_batch.signatures:  # first run in this process: compile (or load from cache) untimed
        started = time.perf_counter()
        simulate_chunk(protocol, parameters, seed, np.zeros(1, dtype=np.int64))
        compile_s = time.perf_counter() - started
    started = time.perf_counter()
    patients, events = [], []
    for first in range(0, n_patients, chunk_size):
        ids = np.arange(first, min(first + chunk_size, n_patients), dtype=np.int64)
        chunk_patients, chunk_events = simulate_chunk(protocol, parameters, seed, ids)
        patients.append(chunk_patients)
        events.append(chunk_events)
        if progress is not None:
            progress(ids.size)
    elapsed = time.perf_counter() - started
    return TrialResult(
        protocol=protocol,
        parameters=parameters,
        seed=seed,
        patients=pd.concat(patients, ignore_index=True),
        events=pd.concat(events, ignore_index=True),
        timings={"compile": compile_s, "simulate": elapsed,
                 "patients_per_s": n_patients / elapsed if elapsed > 0 else float("nan")},
    )
