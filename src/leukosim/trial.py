"""The public entry point: simulate a protocol in a virtual population.

``simulate_trial(protocol, n_patients, seed)`` -> :class:`TrialResult`. Patients are processed in chunks;
every random draw is keyed by (seed, patient id), so results do not depend on the chunk size.

Trajectories (marrow blasts, B cells, CAR transgene, drug concentrations, IL-6 ...) are recorded on a day grid
for the first ``trajectory_patients`` patient ids. Recording makes every grid day a solver step boundary, so a
recorded patient's results can differ from an unrecorded run at the solver tolerance; the number recorded is
part of the run's settings (manifest) and results are reproducible for the same settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from .endpoints.outcomes import event_table, patient_table
from .endpoints.summary import arm_summary, trial_statistics
from .engine.integrator import RECORD_NAMES, integrate_batch
from .engine.simulate import ArmCourse, simulate_arm
from .model.registry import ParameterSet, default_parameters
from .notice import NOTICE
from .population.covariates import Covariates, draw_covariates
from .population.individual import individual_parameters
from .population.streams import Stream, uniforms
from .protocol.load import load_protocol, protocol_hash
from .protocol.schema import Protocol

__all__ = ["simulate_trial", "simulate_chunk", "simulate_patients", "TrialResult", "run_manifest", "assign_arms",
           "trajectory_days", "chunk_ranges", "warm_up_engine", "DEFAULT_CHUNK_SIZE", "DEFAULT_TRAJECTORY_PATIENTS"]

DEFAULT_CHUNK_SIZE = 20_000
DEFAULT_TRAJECTORY_PATIENTS = 200


def warm_up_engine(protocol: Protocol, parameters: ParameterSet, seed: int) -> float:
    """Compile the engine (or load it from numba's on-disk cache) in this process by simulating one patient,
    so that later timings exclude it; returns the seconds taken (0 when it is compiled already)."""
    if integrate_batch.signatures:
        return 0.0
    started = time.perf_counter()
    simulate_chunk(protocol, parameters, seed, np.zeros(1, dtype=np.int64))
    return time.perf_counter() - started


def chunk_ranges(n_patients: int, chunk_size: int) -> list[tuple[int, int]]:
    """Patient-id ranges ``(first, stop)`` of the chunks of a run."""
    return [(first, min(first + chunk_size, n_patients)) for first in range(0, n_patients, chunk_size)]


@dataclass(frozen=True)
class TrialResult:
    """A simulated trial: one row per patient, one row per event, and what produced them."""

    protocol: Protocol
    parameters: ParameterSet
    seed: int
    patients: pd.DataFrame
    events: pd.DataFrame
    trajectories: pd.DataFrame
    trajectory_patients: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    def summary(self) -> pd.DataFrame:
        """Main endpoints of each arm (see :func:`leukosim.endpoints.summary.arm_summary`)."""
        return arm_summary(self.protocol, self.patients)

    def statistics(self) -> dict[str, pd.DataFrame]:
        """Every statistics table of the trial (see :func:`leukosim.endpoints.summary.trial_statistics`)."""
        return trial_statistics(self.protocol, self.patients)

    def manifest(self) -> dict[str, object]:
        """Provenance of the run: versions, seed, hashes, timings."""
        return run_manifest(self.protocol, self.parameters, self.seed, self.n_patients, self.trajectory_patients,
                            {"name": "in-memory"}, self.timings, self.chunk_size)


def run_manifest(protocol: Protocol, parameters: ParameterSet, seed: int, n_patients: int,
                 trajectory_patients: int, backend: dict[str, object], timings: dict[str, float],
                 chunk_size: int, resumed: bool = False) -> dict[str, object]:
    """Provenance of a run: versions, seed, hashes, the backend that computed it and its chunking (patients per
    chunk; ``resumed``: some chunks came from an interrupted run), timings (s)."""
    import numba
    import pyarrow
    import pydantic
    import scipy

    return {
        "leukosim_version": __version__,
        "protocol": protocol.name,
        "protocol_hash": protocol_hash(protocol),
        "parameter_set": parameters.name,
        "parameter_set_hash": parameters.hash(),
        "seed": seed,
        "n_patients": n_patients,
        "trajectory_patients": min(trajectory_patients, n_patients),
        "backend": backend,
        "chunk_size": chunk_size,
        "resumed": resumed,
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
                     "pandas": pd.__version__, "pyarrow": pyarrow.__version__,
                     "pydantic": pydantic.__version__},
        "timings_s": timings,
        "notice": NOTICE,
    }


def assign_arms(protocol: Protocol, seed: int, patient_ids: np.ndarray) -> np.ndarray:
    """Arm index of each patient: randomisation by the arms' allocation ratios."""
    weights = np.array([arm.allocation for arm in protocol.arms])
    bounds = np.cumsum(weights / weights.sum())
    u = uniforms(seed, patient_ids, Stream.block("arm"))
    return np.minimum(np.searchsorted(bounds, u, side="right"), len(protocol.arms) - 1)


def trajectory_days(protocol: Protocol) -> np.ndarray:
    """Recording grid (days since enrollment): daily to day 90, weekly to day 364, then every 28 days to the
    end of the longest arm's follow-up."""
    horizon = max(sum(phase.days for phase in arm.phases) for arm in protocol.arms) + protocol.follow_up_days
    return np.concatenate([np.arange(0.0, 91.0), np.arange(91.0, 365.0, 7.0),
                           np.arange(365.0, horizon + 1.0, 28.0)])


def _trajectory_frame(course: ArmCourse) -> pd.DataFrame:
    """Recorded readouts of an arm's patients in long-wide form, rows after a terminal event dropped."""
    n, times = course.records.shape[:2]
    frame = pd.DataFrame(course.records.reshape(n * times, -1), columns=list(RECORD_NAMES))
    frame.insert(0, "patient_id", np.repeat(course.covariates.patient_id, times))
    frame.insert(1, "arm", course.arm)
    frame.insert(2, "day", np.tile(course.record_times, n))
    return frame[frame[list(RECORD_NAMES)].notna().any(axis=1)]


def simulate_chunk(protocol: Protocol, parameters: ParameterSet, seed: int, patient_ids: np.ndarray,
                   trajectory_patients: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Patients, events and trajectories of the given patient ids (trajectories for ids below
    ``trajectory_patients``)."""
    covariates = draw_covariates(protocol.population, seed, patient_ids, parameters)
    p = individual_parameters(parameters, covariates, seed)
    return simulate_patients(protocol, parameters, seed, covariates, p, assign_arms(protocol, seed, patient_ids),
                             trajectory_patients)


def simulate_patients(protocol: Protocol, parameters: ParameterSet, seed: int, covariates: Covariates,
                      p: np.ndarray, arms: np.ndarray, trajectory_patients: int = 0
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Patients, events and trajectories of given patients: ``covariates``, individual parameters ``p``
    (patients x ``layout.N_PATIENT``, e.g. from :func:`leukosim.population.individual.parameters_from_etas`)
    and arm indices ``arms``; trajectories for patient ids below ``trajectory_patients``. Every other random
    draw is keyed by (``seed``, patient id), as in a trial."""
    patient_ids = covariates.patient_id
    grid = trajectory_days(protocol)
    patients, events, trajectories = [], [], []
    for a, arm in enumerate(protocol.arms):
        for recorded in (True, False):
            members = np.flatnonzero((arms == a) & ((patient_ids < trajectory_patients) == recorded))
            if members.size == 0:
                continue
            course = simulate_arm(protocol, arm, covariates.take(members), p[members], parameters, seed,
                                  record_times=grid if recorded else None)
            patients.append(patient_table(protocol, course))
            events.append(event_table(course))
            if recorded:
                trajectories.append(_trajectory_frame(course))
    empty = pd.DataFrame({"patient_id": np.empty(0, dtype=np.int64), "arm": np.empty(0, dtype=object),
                          "day": np.empty(0), **{name: np.empty(0) for name in RECORD_NAMES}})
    return (pd.concat(patients, ignore_index=True).sort_values("patient_id", kind="stable"),
            pd.concat(events, ignore_index=True).sort_values(["patient_id", "day"], kind="stable"),
            pd.concat(trajectories, ignore_index=True).sort_values(["patient_id", "day"], kind="stable")
            if trajectories else empty)


def simulate_trial(protocol: Protocol | str | Path, n_patients: int, seed: int = 0,
                   parameters: ParameterSet | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   trajectory_patients: int = DEFAULT_TRAJECTORY_PATIENTS,
                   progress: Callable[[int], None] | None = None) -> TrialResult:
    """Simulate ``n_patients`` virtual patients on ``protocol`` (a Protocol, a bundled name or a YAML path),
    recording trajectories of the first ``trajectory_patients`` of them."""
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    if not isinstance(protocol, Protocol):
        protocol = load_protocol(protocol)
    parameters = parameters or default_parameters()
    compile_s = warm_up_engine(protocol, parameters, seed)
    started = time.perf_counter()
    patients, events, trajectories = [], [], []
    for first, stop in chunk_ranges(n_patients, chunk_size):
        ids = np.arange(first, stop, dtype=np.int64)
        chunk = simulate_chunk(protocol, parameters, seed, ids, trajectory_patients)
        patients.append(chunk[0])
        events.append(chunk[1])
        if not chunk[2].empty or not trajectories:  # an empty frame would turn the columns' dtype to object
            trajectories.append(chunk[2])
        if progress is not None:
            progress(ids.size)
    elapsed = time.perf_counter() - started
    return TrialResult(
        protocol=protocol,
        parameters=parameters,
        seed=seed,
        patients=pd.concat(patients, ignore_index=True),
        events=pd.concat(events, ignore_index=True),
        trajectories=pd.concat(trajectories, ignore_index=True),
        trajectory_patients=min(trajectory_patients, n_patients),
        timings={"compile": compile_s, "simulate": elapsed,
                 "patients_per_s": n_patients / elapsed if elapsed > 0 else float("nan")},
        chunk_size=chunk_size,
    )
