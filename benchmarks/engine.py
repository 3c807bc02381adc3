"""Engine benchmark: the compiled engine (Dormand-Prince 5(4), linearly implicit ARK5(4) where Dormand-Prince is
stability-limited) against SciPy's LSODA on the same model.

    python benchmarks/engine.py [--patients N] [--scipy-patients M] [--protocol eliana] [--horizon-days 730]

Timed in one process, after warm-up calls that exclude JIT compilation (engine timings: best of --repeats):

* engine: one ``integrate_batch`` call over N patients, each with the full breakpoint schedule of the
  protocol's first arm along its default path (each phase's ``compile_phase`` schedule at its absolute
  offset, then drug-free follow-up to the horizon, in days since enrollment). Included: adaptive DP5(4)
  and ARK5(4) steps (Jacobians, factorisations), boluses and blinatumomab re-anchoring at breakpoints,
  located events (clone extinction, infection, TRM and SOS deaths, SOS/VOD), toxicity grading, management
  and fatal CRS after every accepted step, CAR-T kinetics summaries and clone resampling. Not included:
  assessments and decisions, so relapse monitoring (armed by a remission assessment) is off and every patient
  follows the default path.
* engine, events off: the same call with every event and management rule switched off: every patient
  integrates the plain ODE to the horizon, the same work as the SciPy path.
* end to end: ``simulate_trial`` for the same N patients, follow-up shortened so the horizon is the same day
  since enrollment: population, parameters, initial states, engine between assessments, assays, decisions,
  outcome and event tables.
* scipy: ``solve_ivp(method="LSODA", rtol=1e-6, atol=1e-8)`` on ``leukosim.model.rhs.derivatives`` through a
  Python wrapper, segment by segment between the same breakpoints with the same boluses (``_apply_bolus``)
  and blinatumomab re-anchoring (``_reanchor_blinatumomab``), for M patients spread evenly over the N. No
  events and no toxicity monitoring (event parameters as in "events off").

Profile keys: accepted steps per patient (engine counter C_STEPS); RHS evaluations and rejected or
event-relocated attempts per step from a replay of the engine's own ``integrate_patient`` and
``integrate_interval`` in interpreted mode with a counting ``derivatives`` (also inside the implicit step and
the Jacobians; ``replay_matches_compiled_steps`` checks that the replay took the compiled engine's steps);
the single-thread cost of the per-step components (RHS, event functions, toxicity monitor, error norm) called
in isolation on arguments sampled along those trajectories, and their shares of the sum (the implicit
method's LU factorisations and solves are not among them). Isolated calls cost more than the same work
inside the engine (``isolated_components_over_step`` > 1 when inlining helps), so the shares are the
informative part.

Where the steps go (same replay): ``implicit_steps_per_patient`` were taken by the ARK5(4);
``capped_steps_per_patient`` took the full ``_max_step`` cap (1 day for 45 days after a CAR-T infusion and while
blinatumomab runs, else 30 days); ``stability_limited_steps_per_patient`` are Dormand-Prince steps whose size
times the spectral radius of the RHS Jacobian (forward differences, every 3rd step) is at least 0.75 of DP5's
real-axis stability boundary 3.31, i.e. the step size was set by stability, not accuracy; the stiff states are
the largest components of that eigenvalue's eigenvector.

CPU-time keys (``*_cpu_s``, ``*_per_cpu_s``, ``speedup_cpu``) count the processor time of this process and
are less sensitive than wall time to other load on the machine (``load_average_1min``).

The last line of output is one JSON object. Throughputs are ratios measured in this process on this machine;
nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
import types
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

import leukosim
from leukosim.engine import implicit, integrator
from leukosim.engine.initial import initial_state
from leukosim.engine.reference import solve_patient
from leukosim.engine.integrator import (
    MAX_RESAMPLES, N_EVENTS, N_RECORD, N_RULE_COLUMNS, _error_norm, _event_values, _monitor,
    integrate_batch,
)
from leukosim.engine.simulate import management_rules
from leukosim.model.layout import (
    B_CAR_CELLS, C_EVENT, C_EXTINCTION_THRESHOLD, C_INFECTION_THRESHOLD,
    C_REMISSION, C_RESAMPLES, C_SOS_THRESHOLD, C_STATUS, C_STEPS, C_TRM_THRESHOLD, EVENT_NAMES, N_BOLUS,
    N_CLASSES, N_DRIVE, N_LN_STATES, N_STATES, STATE_NAMES, STATUS_NAMES,
)
from leukosim.model.registry import INDEX, ParameterSet, default_parameters
from leukosim.model.rhs import RHS_WORK, derivatives
from leukosim.population.covariates import Covariates, draw_covariates
from leukosim.population.individual import individual_parameters
from leukosim.population.streams import Stream
from leukosim.protocol.load import load_protocol
from leukosim.protocol.schedule import compile_phase
from leukosim.protocol.schema import Arm, Phase, Protocol

LOG_STATES = slice(0, N_LN_STATES)  # ln cell counts and ln K of the extinction layer
SCIPY_METHOD = "LSODA"
SCIPY_RTOL = 1.0e-6
SCIPY_ATOL = 1.0e-8
#: Interpreted replays stop after this many RHS evaluations per patient (guards against a stuck step loop).
REPLAY_RHS_LIMIT = 2_000_000


@dataclass(frozen=True)
class Cohort:
    """Patients with everything the engine needs: parameters, initial state and context, full schedule."""

    covariates: Covariates
    parameters: NDArray[np.float64]  # patients x N_PATIENT
    state: NDArray[np.float64]  # patients x N_STATES, at enrollment
    context: NDArray[np.float64]  # patients x N_CONTEXT, at enrollment
    times: NDArray[np.float64]  # breakpoints (days since enrollment), shared by all patients
    drive: NDArray[np.float64]  # patients x breakpoints x N_DRIVE
    bolus: NDArray[np.float64]  # patients x breakpoints x N_BOLUS
    horizon: float  # days since enrollment

    def __len__(self) -> int:
        return self.state.shape[0]


def default_path(arm: Arm) -> list[Phase]:
    """The phases of ``arm`` in the order a patient follows them when every decision takes its default
    (``else``, or the next phase) until follow-up or off-protocol."""
    names = [phase.name for phase in arm.phases]
    path: list[Phase] = []
    q: int | None = 0
    while q is not None and q < len(arm.phases) and arm.phases[q] not in path:
        phase = arm.phases[q]
        path.append(phase)
        fallback = next((d.target for d in phase.then if d.when is None), None)
        if fallback is None:
            q = q + 1
        elif fallback in names:
            q = names.index(fallback)
        else:
            q = None
    return path


def full_schedule(arm: Arm, covariates: Covariates, parameters: ParameterSet, horizon: float,
                  phases: list[Phase] | None = None) -> tuple[NDArray, NDArray, NDArray]:
    """Breakpoints (days since enrollment), drive and boluses of ``phases`` (default: the arm's default path)
    back to back, then drug-free follow-up; breakpoints at or after ``horizon`` are dropped."""
    n = len(covariates)
    times, drive, bolus = [], [], []
    offset = 0.0
    for phase in phases if phases is not None else default_path(arm):
        schedule = compile_phase(phase, arm.phases, covariates, parameters)
        times.append(schedule.times + offset)
        drive.append(schedule.drive)
        bolus.append(schedule.bolus)
        offset += phase.days
    times.append(np.array([offset]))
    drive.append(np.zeros((n, 1, N_DRIVE)))
    bolus.append(np.zeros((n, 1, N_BOLUS)))
    all_times = np.concatenate(times)
    keep = all_times < horizon
    return (all_times[keep], np.ascontiguousarray(np.concatenate(drive, axis=1)[:, keep]),
            np.ascontiguousarray(np.concatenate(bolus, axis=1)[:, keep]))


def make_cohort(protocol: Protocol, parameters: ParameterSet, n: int, seed: int, horizon: float) -> Cohort:
    ids = np.arange(n, dtype=np.int64)
    covariates = draw_covariates(protocol.population, seed, ids, parameters)
    p = individual_parameters(parameters, covariates, seed)
    y, c = initial_state(p, covariates, seed)
    times, drive, bolus = full_schedule(protocol.arms[0], covariates, parameters, horizon)
    return Cohort(covariates, p, y, c, times, drive, bolus, horizon)


def events_off(p: NDArray[np.float64], c: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """Copies of parameters and context with every stochastic or terminal engine event disabled: clone
    extinction, clone resampling, relapse, infection/TRM/SOS deaths and fatal CRS (the last through the
    parameter ``crs_fatal_il6_factor``, read only by the toxicity monitor, never by the RHS)."""
    p, c = p.copy(), c.copy()
    c[..., C_EXTINCTION_THRESHOLD:C_EXTINCTION_THRESHOLD + N_CLASSES] = np.inf
    c[..., C_RESAMPLES:C_RESAMPLES + N_CLASSES] = MAX_RESAMPLES
    c[..., [C_INFECTION_THRESHOLD, C_TRM_THRESHOLD, C_SOS_THRESHOLD]] = np.inf
    c[..., C_REMISSION] = 0.0
    p[..., INDEX["crs_fatal_il6_factor"]] = np.inf
    return p, c


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU time (s) of this process (all threads) over one measured call."""

    wall: float
    cpu: float


class measure:  # noqa: N801 - used as a context manager
    """``with measure() as m: ...`` then ``m.timing``."""

    def __enter__(self) -> "measure":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def run_engine(cohort: Cohort, rules: NDArray[np.float64], seed: int, index: NDArray[np.int64] | None = None,
               disable_events: bool = False) -> tuple[Timing, NDArray, NDArray]:
    """One ``integrate_batch`` call over the patients ``index`` (default all). Returns its timing, the final
    states and the final contexts."""
    index = np.arange(len(cohort)) if index is None else index
    n = index.size
    y = np.ascontiguousarray(cohort.state[index])
    p = np.ascontiguousarray(cohort.parameters[index])
    c = np.ascontiguousarray(cohort.context[index])
    if disable_events:
        p, c = events_off(p, c)
        rules = np.zeros((0, N_RULE_COLUMNS))
    times = np.ascontiguousarray(np.broadcast_to(cohort.times, (n, cohort.times.size)))
    drive = np.ascontiguousarray(cohort.drive[index])
    bolus = np.ascontiguousarray(cohort.bolus[index])
    breakpoints = np.full(n, cohort.times.size, dtype=np.int64)
    t_end = np.full(n, cohort.horizon)
    ids = np.ascontiguousarray(cohort.covariates.patient_id[index])
    with measure() as m:
        integrate_batch(y, p, c, times, drive, bolus, breakpoints, t_end, rules, seed, ids,
                        Stream.block("extinction"), np.empty(0), np.empty((n, 0, N_RECORD)))
    return m.timing, y, c


def best_engine_run(repeats: int, *args: object, **kwargs: object) -> tuple[Timing, NDArray, NDArray]:
    """The fastest (wall clock) of ``repeats`` identical ``run_engine`` calls (results are identical)."""
    runs = [run_engine(*args, **kwargs) for _ in range(repeats)]  # type: ignore[arg-type]
    return min(runs, key=lambda run: run[0].wall)


def scipy_patient(y0: NDArray, p: NDArray, c0: NDArray, times: NDArray, drive: NDArray, bolus: NDArray,
                  t_end: float, method: str = SCIPY_METHOD, rtol: float = SCIPY_RTOL,
                  atol: float = SCIPY_ATOL) -> tuple[NDArray, int, int]:
    """One patient with the SciPy reference solver at the benchmark's settings."""
    return solve_patient(y0, p, c0, times, drive, bolus, t_end, method, rtol, atol)


@dataclass
class Replay:
    """Counts from an interpreted replay, a sample of the arguments the engine passed to the RHS, and every
    accepted step."""

    rhs: NDArray[np.int64]  # RHS evaluations per patient
    steps: NDArray[np.int64]  # accepted steps per patient (replay)
    compiled_steps: NDArray[np.int64]  # accepted steps per patient (compiled run)
    samples: tuple[NDArray, ...]  # t, y, p, u, c of every SAMPLE_EVERY-th RHS call
    attempts: NDArray[np.int64]  # attempted steps per patient
    accepted: list[tuple]  # per accepted step: t at its end, h, the _max_step cap, implicit, y, p, u, c at its end


SAMPLE_EVERY = 7
#: Dormand-Prince 5(4) is stable for h * lambda in [-3.31, 0] on the negative real axis (Hairer, Norsett and
#: Wanner, Solving ODEs I, 2nd ed., section II.10, stability domain of DOPRI5); steps whose h times the spectral
#: radius of the Jacobian exceeds STABILITY_LIMITED_AT of it are counted as limited by stability, not accuracy
#: (a convention: the step controller keeps h x rho just below the boundary, so accuracy-limited steps sit far
#: below it; the profile reports the median h x rho too).
DP5_REAL_STABILITY_BOUNDARY = 3.31
STABILITY_LIMITED_AT = 0.75
#: Every STIFFNESS_SAMPLE_EVERY-th accepted step of the replay gets a finite-difference Jacobian.
STIFFNESS_SAMPLE_EVERY = 3


def replay(cohort: Cohort, rules: NDArray, seed: int, index: NDArray[np.int64]) -> Replay:
    """Re-run patients through the engine's own ``integrate_patient``/``integrate_interval`` source in
    interpreted mode (compiled callees), with ``derivatives`` wrapped to count calls and sample arguments."""
    count = [0]
    samples: list[tuple] = []

    def counting(t, y, p, u, c, dy, work):  # noqa: ANN001, ANN202 - same signature as derivatives
        count[0] += 1
        if count[0] > REPLAY_RHS_LIMIT:
            raise RuntimeError(f"replay exceeded {REPLAY_RHS_LIMIT} RHS evaluations at t={t}")
        if count[0] % SAMPLE_EVERY == 0:
            samples.append((t, y.copy(), p, u.copy(), c.copy()))
        return derivatives(t, y, p, u, c, dy, work)

    accepted: list[tuple] = []
    attempt = {"count": 0, "cap": np.inf, "implicit": False}

    def capped(t, c):  # noqa: ANN001, ANN202 - same signature as integrator._max_step, called once per attempt
        attempt.update(count=attempt["count"] + 1, cap=integrator._max_step(t, c), implicit=False)
        return attempt["cap"]

    implicit_names = dict(implicit.ark_step.py_func.__globals__)
    implicit_names["derivatives"] = counting
    ark_step = types.FunctionType(implicit.ark_step.py_func.__code__, implicit_names)

    def counted_ark_step(*args):  # noqa: ANN002, ANN202 - as implicit.ark_step
        attempt["implicit"] = True
        return ark_step(*args)

    def monitored(t, h, y, p, u, c, *rest):  # noqa: ANN001, ANN002, ANN202 - as integrator._monitor
        accepted.append((t, h, attempt["cap"], attempt["implicit"], y.copy(), p, u.copy(), c.copy()))
        return integrator._monitor(t, h, y, p, u, c, *rest)

    names = dict(integrator.integrate_interval.py_func.__globals__)
    names["derivatives"] = counting
    names["_max_step"] = capped
    names["_monitor"] = monitored
    names["ark_step"] = counted_ark_step
    for name in ("jacobian", "compressed_jacobian"):
        names[name] = types.FunctionType(getattr(implicit, name).py_func.__code__, implicit_names)
    names["integrate_interval"] = types.FunctionType(integrator.integrate_interval.py_func.__code__, names)
    patient = types.FunctionType(integrator.integrate_patient.py_func.__code__, names)
    _, _, compiled = run_engine(cohort, rules, seed, index)
    rhs = np.zeros(index.size, dtype=np.int64)
    steps = np.zeros(index.size, dtype=np.int64)
    attempts = np.zeros(index.size, dtype=np.int64)
    for k, i in enumerate(index):
        y = cohort.state[i].copy()
        c = cohort.context[i].copy()
        count[0] = 0
        attempt["count"] = 0
        patient(y, cohort.parameters[i], c, cohort.times, cohort.drive[i], cohort.bolus[i], cohort.times.size,
                cohort.horizon, rules, seed, cohort.covariates.patient_id[i], Stream.block("extinction"),
                np.empty(0), np.empty((0, N_RECORD)))
        rhs[k] = count[0]
        steps[k] = c[C_STEPS]
        attempts[k] = attempt["count"]
    stacked = tuple(np.ascontiguousarray(np.array([sample[j] for sample in samples])) for j in range(5))
    return Replay(rhs, steps, compiled[:, C_STEPS].astype(np.int64), stacked, attempts, accepted)


@numba.njit(cache=False)
def _component_loop(which: int, t: NDArray, y: NDArray, p: NDArray, u: NDArray, c: NDArray, rules: NDArray,
                    repeats: int) -> float:
    """Call one engine component on every sample, ``repeats`` times (0 RHS, 1 event functions, 2 toxicity
    monitor, 3 error norm)."""
    dy = np.empty(N_STATES)
    work = np.empty(RHS_WORK)
    g = np.empty(N_EVENTS)
    total = 0.0
    for k in range(t.size):  # one sample at a time, so its data are in cache as in the engine
        for _ in range(repeats):
            if which == 0:
                total += derivatives(t[k], y[k], p[k], u[k], c[k], dy, work)
            elif which == 1:
                _event_values(y[k], p[k], c[k], g)
                total += g[0]
            elif which == 2:
                total += _monitor(t[k], 0.1, y[k], p[k], u[k], c[k], 100.0, rules, 0, 0, 0, dy, 5.0)
            else:
                total += _error_norm(y[k], y[k], dy)
    return total


def component_costs_us(samples: tuple[NDArray, ...], rules: NDArray, repeats: int = 50) -> dict[str, float]:
    """CPU time of the calling thread (microseconds) of one call of each per-step component of the engine,
    averaged over RHS arguments sampled along the replayed trajectories (best of 3)."""
    t, y, p, u, c = (a.copy() for a in samples)
    costs = {}
    for which, name in enumerate(("rhs", "event_functions", "monitor", "error_norm")):
        _component_loop(which, t[:2], y[:2], p[:2], u[:2], c[:2], rules, 1)
        best = np.inf
        for _ in range(3):
            started = time.thread_time()
            _component_loop(which, t, y, p, u, c, rules, repeats)
            best = min(best, time.thread_time() - started)
        costs[name] = best / (t.size * repeats) * 1e6
    return costs


def jacobian(t: float, y: NDArray, p: NDArray, u: NDArray, c: NDArray) -> NDArray:
    """Forward-difference Jacobian of the RHS (1/day) at one state."""
    dy0, dy, work = np.empty(N_STATES), np.empty(N_STATES), np.empty(RHS_WORK)
    derivatives(t, y, p, u, c, dy0, work)
    jac = np.empty((N_STATES, N_STATES))
    for j in range(N_STATES):
        shifted = y.copy()
        shifted[j] += 1e-7 * max(1.0, abs(y[j]))
        derivatives(t, shifted, p, u, c, dy, work)
        jac[:, j] = (dy - dy0) / (shifted[j] - y[j])
    return jac


def step_profile(accepted: list[tuple], patients: int) -> dict[str, object]:
    """Where the accepted steps go: forced by the ``_max_step`` cap, or limited by the stability of DP5 (step
    times the Jacobian's spectral radius near the real stability boundary), and which states carry the stiff
    mode (largest component of the eigenvector of the eigenvalue of largest modulus)."""
    size = np.array([step[1] for step in accepted])
    cap = np.array([step[2] for step in accepted])
    implicit_step = np.array([step[3] for step in accepted])
    capped = size >= cap * (1.0 - 1e-12)
    h_rho, stiff_states = [], []
    for t, h, _, _, y, p, u, c in accepted[::STIFFNESS_SAMPLE_EVERY]:
        values, vectors = np.linalg.eig(jacobian(t, y, p, u, c))
        largest = int(np.argmax(np.abs(values)))
        h_rho.append(h * abs(values[largest]))
        stiff_states.append(STATE_NAMES[int(np.argmax(np.abs(vectors[:, largest])))])
    h_rho_array = np.array(h_rho)
    explicit_sampled = ~implicit_step[::STIFFNESS_SAMPLE_EVERY]
    uncapped_sampled = ~capped[::STIFFNESS_SAMPLE_EVERY] & explicit_sampled
    limited = (h_rho_array >= STABILITY_LIMITED_AT * DP5_REAL_STABILITY_BOUNDARY) & explicit_sampled
    names, counts = np.unique(np.array(stiff_states)[limited], return_counts=True)
    return {
        "implicit_steps_per_patient": round(float(implicit_step.sum()) / patients, 1),
        "capped_steps_per_patient": round(float(capped.sum()) / patients, 1),
        "steps_under_1_day_cap_per_patient": round(float((cap <= 1.0).sum()) / patients, 1),
        "stability_limited_steps_per_patient": round(float(limited.mean()) * size.size / patients, 1),
        "median_step_days_uncapped_explicit": round(float(np.median(size[~capped & ~implicit_step])), 3),
        "median_h_times_spectral_radius_uncapped_explicit": round(float(np.median(h_rho_array[uncapped_sampled])),
                                                                  2),
        "median_step_days_implicit": round(float(np.median(size[implicit_step])), 3) if implicit_step.any()
        else None,
        "stiff_states_of_stability_limited_steps": {str(n): int(k) for n, k in zip(names, counts)},
    }


def origin_day(protocol: Protocol, cohort: Cohort) -> float:
    """Day (since enrollment) that ``simulate_trial`` counts follow-up from on the default path: the later of
    the EFS and OS origins, an origin "infusion" being the first CAR-T infusion (else day 0)."""
    infused = np.flatnonzero(cohort.bolus[0, :, B_CAR_CELLS] > 0.0)
    infusion = float(cohort.times[infused[0]]) if infused.size else 0.0
    origins = (protocol.endpoints.efs.origin, protocol.endpoints.os.origin)
    return infusion if "infusion" in origins else 0.0


def outcome_counts(c: NDArray[np.float64]) -> dict[str, int]:
    events, event_counts = np.unique(c[:, C_EVENT], return_counts=True)
    counts = {f"event_{EVENT_NAMES[int(e)]}": int(n) for e, n in zip(events, event_counts)}
    counts.update({f"status_{STATUS_NAMES[int(s)]}": int(n)
                   for s, n in zip(*np.unique(c[:, C_STATUS], return_counts=True))})
    return counts


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--scipy-patients", type=int, default=20)
    parser.add_argument("--protocol", default="eliana")
    parser.add_argument("--horizon-days", type=float, default=730.0, help="days since enrollment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="engine timings are the best of this many calls")
    parser.add_argument("--watchdog-s", type=float, default=1800.0,
                        help="print tracebacks and exit if the run takes longer (a patient stuck in the "
                             "engine cannot be interrupted otherwise)")
    args = parser.parse_args(argv)
    faulthandler.dump_traceback_later(args.watchdog_s, exit=True)

    protocol = load_protocol(args.protocol)
    parameters = default_parameters()
    rules = management_rules(protocol)
    n, m, seed = args.patients, min(args.scipy_patients, args.patients), args.seed
    cohort = make_cohort(protocol, parameters, n, seed, args.horizon_days)
    subset = np.unique(np.linspace(0, n - 1, m).round().astype(np.int64))
    cores = numba.get_num_threads()
    load = os.getloadavg()[0]
    log(f"{protocol.name}: {n} patients, {cohort.times.size} breakpoints to day {cohort.horizon:g}, "
        f"{cores} threads")

    log("warm-up (JIT compilation)")
    run_engine(cohort, rules, seed, np.arange(min(n, 4)))
    run_engine(cohort, rules, seed, np.arange(min(n, 4)), disable_events=True)

    log(f"engine, all features (best of {args.repeats})")
    engine, _, c_full = best_engine_run(args.repeats, cohort, rules, seed)
    log(f"engine, events off (best of {args.repeats})")
    engine_off, _, c_off = best_engine_run(args.repeats, cohort, rules, seed, disable_events=True)
    log(f"engine, all features, 1 thread (best of {args.repeats})")
    numba.set_num_threads(1)
    engine_1, _, _ = best_engine_run(args.repeats, cohort, rules, seed)
    numba.set_num_threads(cores)

    log("end to end (simulate_trial)")
    follow_up = int(round(args.horizon_days - origin_day(protocol, cohort)))
    same_horizon = protocol.model_copy(update={"follow_up_days": follow_up})
    leukosim.simulate_trial(same_horizon, min(n, 8), seed=seed)
    with measure() as m:
        leukosim.simulate_trial(same_horizon, n, seed=seed)
    end_to_end = m.timing

    log(f"scipy LSODA, {subset.size} patients")
    p_off, c_scipy = events_off(cohort.parameters[subset], cohort.context[subset])
    first = subset[0]
    scipy_patient(cohort.state[first], p_off[0], c_scipy[0], cohort.times[:2], cohort.drive[first, :2],
                  cohort.bolus[first, :2], float(cohort.times[1]))
    nfev = np.zeros(subset.size, dtype=np.int64)
    njev = np.zeros(subset.size, dtype=np.int64)
    scipy_final = np.empty((subset.size, N_STATES))
    with measure() as m:
        for k, i in enumerate(subset):
            scipy_final[k], nfev[k], njev[k] = scipy_patient(
                cohort.state[i], p_off[k], c_scipy[k], cohort.times, cohort.drive[i], cohort.bolus[i],
                cohort.horizon)
    scipy = m.timing
    _, engine_final, _ = run_engine(cohort, rules, seed, subset, disable_events=True)
    agreement = float(np.max(np.abs(engine_final[:, LOG_STATES] - scipy_final[:, LOG_STATES])))

    log("profile: interpreted replay with counting RHS, component costs")
    profile = replay(cohort, rules, seed, subset)
    costs = component_costs_us(profile.samples, rules)

    steps = c_full[:, C_STEPS]
    rhs_per_step = profile.rhs.sum() / profile.steps.sum()
    us_per_step_1 = engine_1.cpu / steps.sum() * 1e6
    # per accepted step: its RHS evaluations, and per attempt two event-function evaluations and one error
    # norm, then one monitor call; the rest is stage arithmetic, linear algebra and control
    attempts_per_step = profile.attempts.sum() / profile.steps.sum()
    modelled = {"rhs": rhs_per_step * costs["rhs"], "event_functions": 2.0 * attempts_per_step
                * costs["event_functions"], "monitor": costs["monitor"],
                "error_norm": attempts_per_step * costs["error_norm"]}
    isolated = sum(modelled.values())
    patients_per_s = n / engine.wall
    scipy_rate = subset.size / scipy.wall
    result: dict[str, object] = {
        "patients_per_s": round(patients_per_s, 1),
        "scipy_patients_per_s": round(scipy_rate, 2),
        "speedup": round(patients_per_s / scipy_rate, 1),
        "end_to_end_patients_per_s": round(n / end_to_end.wall, 1),
        "patients": n,
        "scipy_patients": int(subset.size),
        "cores": cores,
        "protocol": protocol.name,
        "horizon_days": args.horizon_days,
        "load_average_1min": round(load, 2),
        "patients_per_s_events_off": round(n / engine_off.wall, 1),
        "speedup_events_off": round(n / engine_off.wall / scipy_rate, 1),
        "patients_per_s_1_thread": round(n / engine_1.wall, 1),
        "speedup_1_thread": round(n / engine_1.wall / scipy_rate, 1),
        "patients_per_cpu_s": round(n / engine.cpu, 1),
        "scipy_patients_per_cpu_s": round(subset.size / scipy.cpu, 2),
        "speedup_cpu": round(n / engine.cpu / (subset.size / scipy.cpu), 1),
        "engine_wall_s": round(engine.wall, 4),
        "engine_cpu_s": round(engine.cpu, 4),
        "engine_1_thread_cpu_s": round(engine_1.cpu, 4),
        "end_to_end_wall_s": round(end_to_end.wall, 3),
        "scipy_wall_s": round(scipy.wall, 3),
        "scipy_cpu_s": round(scipy.cpu, 3),
        "breakpoints": int(cohort.times.size),
        "steps_per_patient": round(float(steps.mean()), 1),
        "steps_per_patient_events_off": round(float(c_off[:, C_STEPS].mean()), 1),
        "steps_per_patient_scipy_subset": round(float(steps[subset].mean()), 1),
        "rhs_evals_per_patient": round(float(profile.rhs.mean()), 1),
        "rhs_evals_per_step": round(float(rhs_per_step), 3),
        "rejected_or_relocated_per_step": round(float(attempts_per_step - 1.0), 3),
        "replay_matches_compiled_steps": bool(np.array_equal(profile.steps, profile.compiled_steps)),
        **step_profile(profile.accepted, subset.size),
        "us_per_step_1_thread": round(us_per_step_1, 3),
        **{f"{name}_us": round(cost, 4) for name, cost in costs.items()},
        "isolated_components_over_step": round(isolated / us_per_step_1, 3),
        **{f"{name}_share": round(cost / isolated, 3) for name, cost in modelled.items()},
        "scipy_rhs_evals_per_patient": round(float(nfev.mean()), 1),
        "scipy_jacobians_per_patient": round(float(njev.mean()), 1),
        "scipy_us_per_rhs_eval": round(scipy.cpu / nfev.sum() * 1e6, 2),
        "engine_vs_scipy_max_abs_ln_state": float(f"{agreement:.3g}"),
        **outcome_counts(c_full),
    }
    faulthandler.cancel_dump_traceback_later()
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
