"""A reference solver for the engine: one patient through its breakpoints with SciPy ``solve_ivp`` on the same
right-hand side, boluses and blinatumomab re-anchoring as the compiled engine, without stochastic events or
toxicity management. Used to check the engine's numerics, to benchmark it, and (with
``deterministic_course``) to state the deterministic problem that the SBML export writes out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

from ..model.layout import (
    C_BLIN_INTERRUPTED_UNTIL, C_EXTINCTION_THRESHOLD, C_INFECTION_THRESHOLD, C_REMISSION, C_RESAMPLES,
    C_SOS_THRESHOLD, C_TRM_THRESHOLD, N_CLASSES, N_STATES, U_BLIN_RATE,
)
from ..model.registry import INDEX, ParameterSet, default_parameters
from ..model.rhs import RHS_WORK, derivatives
from ..population.covariates import Covariates, draw_covariates
from ..population.individual import individual_parameters
from ..protocol.schedule import compile_phase
from ..protocol.schema import Arm, Protocol
from .initial import initial_state
from .integrator import MAX_RESAMPLES, _apply_bolus, _reanchor_blinatumomab

__all__ = ["DeterministicCourse", "course_of", "deterministic_course", "responder_path", "solve_patient",
           "switch_off_stochastic_layers"]

#: Responses a complete responder (CR, MRD negative at every assessment) satisfies in a decision condition.
_RESPONDER_MATCHES = ("CR", "CR_or_CRi")


def switch_off_stochastic_layers(p: NDArray[np.float64], c: NDArray[np.float64]) -> None:
    """Make the engine solve the deterministic ODE for patients (rows) of parameters ``p`` and context ``c``,
    in place: no clone extinction (thresholds +inf), no clone resampling after a bottleneck (resample counters
    at their maximum: the thresholds alone do not disable it), no relapse monitoring, no infection/TRM/SOS
    deaths (thresholds +inf) and no fatal CRS (read only by the toxicity monitor). Clinical management is off
    when the engine is given an empty rule table."""
    c[:, C_EXTINCTION_THRESHOLD:C_EXTINCTION_THRESHOLD + N_CLASSES] = np.inf
    c[:, C_RESAMPLES:C_RESAMPLES + N_CLASSES] = MAX_RESAMPLES
    c[:, [C_INFECTION_THRESHOLD, C_TRM_THRESHOLD, C_SOS_THRESHOLD]] = np.inf
    c[:, C_REMISSION] = 0.0
    p[:, INDEX["crs_fatal_il6_factor"]] = np.inf


def responder_path(arm: Arm, prior_hsct: bool) -> tuple[str, ...]:
    """Phases a complete responder (CR with MRD below every threshold at every assessment) goes through on
    ``arm``, from its first phase until a decision sends the patient to follow-up or off protocol."""
    names = [phase.name for phase in arm.phases]
    path: list[str] = []
    position: int | None = 0
    while position is not None and names[position] not in path:
        phase = arm.phases[position]
        path.append(phase.name)
        target = next((decision.target for decision in phase.then
                       if decision.when is None
                       or ((decision.when.response is None or decision.when.response in _RESPONDER_MATCHES)
                           and (decision.when.response_not is None
                                or decision.when.response_not not in _RESPONDER_MATCHES)
                           and decision.when.mrd_at_least is None
                           and decision.when.prior_hsct in (None, prior_hsct))), None)
        if target is None:
            position = position + 1 if position + 1 < len(names) else None
        else:
            position = names.index(target) if target in names else None
    return tuple(path)


@dataclass(frozen=True)
class DeterministicCourse:
    """The deterministic initial value problem of some patients along phases of one arm, with every stochastic
    layer off (``switch_off_stochastic_layers``). Arrays are per patient (rows); times in days since
    enrollment."""

    protocol: str
    arm: str
    phases: tuple[str, ...]
    seed: int
    patient_id: NDArray[np.int64]
    y0: NDArray[np.float64]  # patients x N_STATES
    p: NDArray[np.float64]  # patients x N_PATIENT
    c0: NDArray[np.float64]  # patients x N_CONTEXT
    times: NDArray[np.float64]  # breakpoints, shared by the patients
    drive: NDArray[np.float64]  # patients x breakpoints x N_DRIVE
    bolus: NDArray[np.float64]  # patients x breakpoints x N_BOLUS
    t_end: float


def deterministic_course(protocol: Protocol, patient_ids: Sequence[int] | NDArray[np.int64], seed: int,
                         arm: str | None = None, phases: Sequence[str] | None = None,
                         parameters: ParameterSet | None = None) -> DeterministicCourse:
    """Virtual patients ``patient_ids`` of ``protocol`` (their covariates and individual parameters for
    ``seed``, as in a run with that seed) on ``phases`` of ``arm`` back to back (default: the first arm and its
    ``responder_path``). Raises ValueError for an unknown arm or phase, or patients whose default paths differ."""
    parameters = parameters or default_parameters()
    arms = {a.name: a for a in protocol.arms}
    chosen = protocol.arms[0] if arm is None else arms.get(arm)
    if chosen is None:
        raise ValueError(f"protocol {protocol.name!r} has no arm {arm!r} (arms: {', '.join(arms)})")
    ids = np.asarray(patient_ids, dtype=np.int64)
    covariates = draw_covariates(protocol.population, seed, ids, parameters)
    p = individual_parameters(parameters, covariates, seed)
    return course_of(protocol, chosen, covariates, p, seed, parameters, phases)


def course_of(protocol: Protocol, arm: Arm, covariates: Covariates, p: NDArray[np.float64], seed: int,
              parameters: ParameterSet, phases: Sequence[str] | None = None) -> DeterministicCourse:
    """The deterministic course of patients with given ``covariates`` and individual parameters ``p`` on
    ``phases`` of ``arm`` back to back (default: its ``responder_path``); see :func:`deterministic_course`."""
    ids = covariates.patient_id
    p = np.array(p, dtype=np.float64)  # switched off below: the caller's array is not touched
    if phases is None:
        paths = {responder_path(arm, bool(prior)) for prior in covariates.prior_hsct}
        if len(paths) != 1:
            raise ValueError("these patients follow different default phase paths; name the phases")
        phases = paths.pop()
    by_name = {phase.name: phase for phase in arm.phases}
    unknown = [name for name in phases if name not in by_name]
    if unknown or not phases:
        raise ValueError(f"arm {arm.name!r} has no phase {', '.join(map(repr, unknown)) or '(none given)'} "
                         f"(phases: {', '.join(by_name)})")
    y0, c0 = initial_state(p, covariates, seed)
    switch_off_stochastic_layers(p, c0)
    times, drive, bolus = [], [], []
    offset = 0.0
    for name in phases:
        schedule = compile_phase(by_name[name], arm.phases, covariates, parameters)
        times.append(schedule.times + offset)
        drive.append(schedule.drive)
        bolus.append(schedule.bolus)
        offset += by_name[name].days
    return DeterministicCourse(protocol.name, arm.name, tuple(phases), seed, ids, y0, p, c0,
                               np.concatenate(times), np.concatenate(drive, axis=1),
                               np.concatenate(bolus, axis=1), offset)


def solve_patient(y0: NDArray, p: NDArray, c0: NDArray, times: NDArray, drive: NDArray, bolus: NDArray,
                  t_end: float, method: str = "LSODA", rtol: float = 1e-6, atol: float = 1e-8,
                  record_times: NDArray | None = None,
                  record_out: NDArray | None = None) -> tuple[NDArray, int, int]:
    """Final state, RHS evaluations and Jacobian evaluations of one patient (state ``y0``, parameters ``p``,
    context ``c0``) from ``times[0]`` to ``t_end`` through breakpoints ``times`` (absolute days). States at
    ``record_times`` (sorted absolute days; at a breakpoint, after its boluses) fill the rows of ``record_out``
    (len(record_times) x N_STATES) if given."""
    y = np.array(y0, dtype=np.float64)
    c = np.array(c0, dtype=np.float64)
    dy = np.empty(N_STATES)
    work = np.empty(RHS_WORK)
    record_times = np.empty(0) if record_times is None else np.asarray(record_times, dtype=np.float64)
    evaluations = jacobians = 0
    for j in range(times.size):
        t = float(times[j])
        last = j + 1 == times.size
        t_next = t_end if last else float(times[j + 1])
        _apply_bolus(t, y, p, c, np.ascontiguousarray(bolus[j]))
        _reanchor_blinatumomab(t, p, c, drive[j, U_BLIN_RATE] if c[C_BLIN_INTERRUPTED_UNTIL] <= t else 0.0)
        if t_next <= t:
            continue
        u = np.ascontiguousarray(drive[j])

        def rhs(time: float, state: NDArray) -> NDArray:
            derivatives(time, state, p, u, c, dy, work)
            return dy.copy()

        due = np.flatnonzero((record_times >= t) & ((record_times <= t_next) if last else (record_times < t_next)))
        solution = solve_ivp(rhs, (t, t_next), y, method=method, rtol=rtol, atol=atol,
                             t_eval=np.unique(np.append(record_times[due], t_next)))
        if not solution.success:
            raise RuntimeError(f"solve_ivp failed on [{t}, {t_next}]: {solution.message}")
        if record_out is not None:
            record_out[due] = solution.y[:, :due.size].T
        y = np.ascontiguousarray(solution.y[:, -1])
        evaluations += solution.nfev
        jacobians += solution.njev
    return y, evaluations, jacobians
