"""The engine at the limit: against SciPy and libRoadRunner, scaling from 1 to 2 threads and from 1 to 2 Dask
workers, and the flop bound.

    python benchmarks/limits.py [--protocol eliana] [--patients 2000] [--scipy-patients 10]
                                [--roadrunner-patients 10] [--replay-patients 4] [--repeats 3]
                                [--dask-patients 40000] [--dask-chunk-size 1000]

All three solvers integrate the same problem, in one process run: the deterministic course of
``engine.reference.deterministic_course`` (patients 0..N-1 of the protocol's first arm, its complete-responder
phase path back to back, every stochastic and terminal layer off, no management rules; then drug-free to
--horizon-days, default 730), the problem ``leukosim.interop.sbml`` exports and ``tests/test_sbml.py`` checks
roadrunner against.

* engine: one ``integrate_batch`` call over the N patients (best of --repeats), with all numba threads, then
  with 1 thread; scaling efficiency = (rate at 2 threads / rate at 1 thread) / 2.
* scipy: ``engine.reference.solve_patient`` (LSODA, rtol 1e-6, atol 1e-8, the compiled RHS through a Python
  wrapper, segment by segment between breakpoints) for M patients spread over the N.
* roadrunner: libRoadRunner (CVODE, rtol 1e-6, atol 1e-8) on ``course_sbml`` of each of M patients (one SBML
  document per patient: its parameters, doses and dose times are its own). Documents are loaded (LLVM
  compilation) before timing; the time is ``resetAll()`` + ``simulate(0, t_end, 2)`` per patient, best of 2
  passes (``reset()`` would leave the parameters the dose events assigned at their end-of-course values, so a
  second pass would simulate another problem).
* dask: the whole trial (``backends.ChunkTask``: simulation and Parquet encoding of each chunk) of
  --dask-patients patients in chunks of --dask-chunk-size through ``DaskBackend.map``, on one local cluster
  started here (worker processes with 1 thread each, ``backends.worker_environment``): first with 1 worker,
  then scaled to 2. Before each timing every worker computes a one-patient chunk (compilation or cache load,
  imports), untimed, and chunks are checked to run on 1 numba thread. 40 chunks by default (20 per worker with
  2) keep both workers busy: an uneven finish costs at most about one chunk. Scaling efficiency = (rate with 2
  workers / rate with 1 worker) / 2; --dask-patients 0 skips it.
* accuracy: the final ln states (cell counts and Kendall's K) of the engine, SciPy and roadrunner against a tight
  reference, ``solve_patient`` with LSODA at rtol 1e-10, atol 1e-12 (the tolerances of ``tests/test_sbml.py``), on
  the SciPy and roadrunner patients: the ``max_abs_ln_state_*_vs_reference`` keys say which solver a disagreement
  between two of them comes from. The engine's error control is fixed (1e-5 per step on ln states, relative 1e-6
  on the linear states); LSODA and CVODE at rtol 1e-6, atol 1e-8 control each step's error relative to |y|, and ln
  states of extinct clones and of Kendall's K reach |y| of several hundred on this course, so their per-step
  allowance there is ~1e-4 (measured figures: README "Speed"). The timed roadrunner pass starts from
  ``resetAll()``: ``reset()`` leaves the parameters that SBML dose events assigned at their end-of-course values.
* flop bound: RHS evaluations of the engine (accepted steps of the compiled run x RHS evaluations per accepted
  step from an interpreted replay of the engine's own step loop with a counting RHS, ``engine.replay``) x
  :data:`FLOPS_PER_RHS` (a hand count of ``model.rhs.derivatives``, below), plus the Dormand-Prince stage
  arithmetic per attempted step, against ``cores x`` the scalar FLOP/s of a small numba kernel measured here
  (``fraction_of_flop_bound``) and against ``cores x`` the vectorised FLOP/s of another
  (``fraction_of_simd_flop_bound``). The lane exponentials and the stage arithmetic run in SIMD lanes, so the
  scalar figure can exceed 1; the vectorised one is nearer the hard bound (everything at full vector width),
  from below, as its kernel's loads and stores make its peak a lower estimate. The
  implicit steps' stage arithmetic and linear algebra are not counted: the bound is optimistic.

Throughputs are ratios measured in this process; nothing here asserts a speed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import types
from collections.abc import Callable

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import engine as engine_bench  # noqa: E402  (benchmarks/engine.py)
from engine import log  # noqa: E402

from leukosim.backends import ChunkTask, DaskBackend, worker_environment  # noqa: E402
from leukosim.engine.integrator import N_RULE_COLUMNS  # noqa: E402
from leukosim.engine.reference import DeterministicCourse, deterministic_course, solve_patient  # noqa: E402
from leukosim.model.layout import C_STEPS, N_LN_STATES, N_STATES, STATE_NAMES  # noqa: E402
from leukosim.model.registry import default_parameters  # noqa: E402
from leukosim.protocol.load import load_protocol  # noqa: E402
from leukosim.protocol.schema import Protocol  # noqa: E402
from leukosim.trial import chunk_ranges  # noqa: E402

RTOL, ATOL = 1.0e-6, 1.0e-8
REFERENCE_RTOL, REFERENCE_ATOL = 1.0e-10, 1.0e-12  # tests/test_sbml.py
LOG_STATES = slice(0, N_LN_STATES)

#: Flops of one lane of ``model.lanes.exp_lanes``, counted from its source: clamp 2, k 3 (multiply, add, floor),
#: reduction 4, r^2 and r^4 2, Estrin polynomial 27, scaling 2, overflow/underflow/NaN selects 3.
EXP_FLOPS = 43
#: Hand count of one evaluation of ``model.rhs.derivatives`` on the CAR-T path (eliana: CAR-T present, four
#: leukemic classes alive, no blinatumomab, no inotuzumab, no transplant), from the source line by line:
#: arithmetic (+ - * /, min, max: 1 flop each) and the lane exponentials. Blinatumomab adds its decay (an exp),
#: 3 hill() (a pow each, ~2 exp) and ~30 flops; those branches are off here.
FLOPS_PER_RHS_ARITHMETIC = {
    "leukemic cells, totals, CD19+ sum": 3 + 8,
    "CAR total, lymphocytes": 4,
    "blinatumomab (none given: 2 comparisons) and inotuzumab concentration": 2 + 2,
    "CD19 targets, CAR kill": 2 + 3,
    "birth rate, chemo, inotuzumab effects, switches": 6 + 1 + 3 + 4 + 2,
    "4 leukemic classes: death, net rate, switching ratio, extinction layer (product, ratio), kill flux": 4 * 12,
    "pool ratios (B lineage 2, T cells 2, CAR-T 3: a comparison and a division each)": 7 * 2,
    "marrow, B-lineage source and B cells": 6 + 7 + 2 + 12 + 4,
    "T cells: homeostasis, space, proliferation": 8 + 6 + 6,
    "CAR-T effector, memory, exhausted": 29,
    "inotuzumab PK, liver injury, hazards": 15 + 1,
    "serum IL-6": 8,
}
#: lane exponentials: the 16 ln-scale states (4 leukemic classes, 4 Kendall K, B precursors, mature B, marrow,
#: resting and active T, 3 CAR compartments).
EXPS_PER_RHS = 16
FLOPS_PER_RHS = sum(FLOPS_PER_RHS_ARITHMETIC.values()) + EXP_FLOPS * EXPS_PER_RHS
#: Dormand-Prince 5(4) stage arithmetic per attempted step on N_STATES states: stage sums (1+2+...+6 terms,
#: a multiply-add each), the 5th-order update (6 terms) and the error estimate (7 terms) and its scaled norm
#: (~5 flops per state).
DP_FLOPS_PER_ATTEMPT = N_STATES * (2 * (1 + 2 + 3 + 4 + 5 + 6) + 2 * 6 + 2 * 7 + 5)


@numba.njit(cache=False)
def _flop_kernel(n: int, x: float) -> float:
    """8 independent multiply-add chains (16 flops per iteration), scalar double precision."""
    a0, a1, a2, a3, a4, a5, a6, a7 = x, x + 0.1, x + 0.2, x + 0.3, x + 0.4, x + 0.5, x + 0.6, x + 0.7
    m, b = 0.999999, 1.0e-7
    for _ in range(n):
        a0 = a0 * m + b
        a1 = a1 * m + b
        a2 = a2 * m + b
        a3 = a3 * m + b
        a4 = a4 * m + b
        a5 = a5 * m + b
        a6 = a6 * m + b
        a7 = a7 * m + b
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


@numba.njit(cache=False, fastmath={"contract"})
def _simd_flop_kernel(n: int, a: np.ndarray) -> float:
    """Multiply-add chains across the lanes of ``a`` (2 flops per element and iteration), which LLVM
    vectorises (fused multiply-adds on the widest vectors it chooses for this machine). The lanes go through
    memory on every iteration, so this is a lower estimate of the vector peak."""
    m, b = 0.999999, 1.0e-7
    for _ in range(n):
        for i in range(a.size):
            a[i] = a[i] * m + b
    return a.sum()


def _best_of_3(run: Callable[[], object]) -> float:
    run()
    best = np.inf
    for _ in range(3):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def scalar_flops_per_s(n: int = 100_000_000) -> float:
    """Measured scalar double-precision FLOP/s of one core (best of 3)."""
    _flop_kernel(10, 1.0)
    return 16.0 * n / _best_of_3(lambda: _flop_kernel(n, 1.0))


def simd_flops_per_s(n: int = 2_000_000, lanes: int = 64) -> float:
    """Measured vectorised double-precision FLOP/s of one core (best of 3)."""
    a = np.linspace(1.0, 2.0, lanes)
    _simd_flop_kernel(10, a)
    return 2.0 * n * lanes / _best_of_3(lambda: _simd_flop_kernel(n, a))


def roadrunner_runs(course: DeterministicCourse, rows: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Best-of-2 total simulation time of the rows' roadrunner models, their final states, and load time."""
    import roadrunner

    from leukosim.interop.sbml import course_sbml

    started = time.perf_counter()
    models = []
    for row in rows:
        model = roadrunner.RoadRunner(course_sbml(course, int(row)))
        model.integrator.relative_tolerance = RTOL
        model.integrator.absolute_tolerance = ATOL
        model.integrator.maximum_num_steps = 500_000
        model.timeCourseSelections = ["time", *STATE_NAMES]
        models.append(model)
    load = time.perf_counter() - started
    final = np.empty((rows.size, N_STATES))
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        for k, model in enumerate(models):
            # reset() restores time, species and rate-rule variables only; the dose events assign parameters
            # (drug anchors, CAR-T and transplant flags), which resetAll() restores too
            model.resetAll()
            final[k] = np.asarray(model.simulate(0.0, course.t_end, 2))[-1, 1:]
        best = min(best, time.perf_counter() - started)
    return best, final, load


def engine_threads(first: int, stop: int) -> int:
    """The numba threads a chunk is computed with (a task for ``DaskBackend.map``)."""
    return numba.get_num_threads()


def dask_rates(protocol: Protocol, n: int, chunk_size: int, seed: int) -> dict[int, float]:
    """Patients per second of ``DaskBackend.map`` over ``n`` patients with 1, then 2 workers of one local cluster
    (process workers, 1 thread each; every worker warmed up untimed before each timing)."""
    from distributed import LocalCluster

    task = ChunkTask(protocol, default_parameters(), seed, trajectory_patients=0)
    ranges = chunk_ranges(n, chunk_size)
    rates = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR, env=worker_environment()) as cluster:
        for workers in (1, 2):
            cluster.scale(workers)
            with DaskBackend(scheduler=cluster.scheduler_address) as backend:
                backend.client.wait_for_workers(workers)
                backend.client.run(task, 0, 1)  # every worker: compile or load the engine, import the encoders
                threads = set(backend.map(engine_threads, [(k, k + 1) for k in range(2 * workers)]))
                if threads != {1}:
                    raise SystemExit(f"chunks ran with {threads} numba threads, expected 1")
                started = time.perf_counter()
                done = sum(chunk.stop - chunk.first for chunk in backend.map(task, ranges))
                rates[workers] = done / (time.perf_counter() - started)
    return rates


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="eliana")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--scipy-patients", type=int, default=10)
    parser.add_argument("--roadrunner-patients", type=int, default=10)
    parser.add_argument("--replay-patients", type=int, default=4)
    parser.add_argument("--horizon-days", type=float, default=730.0,
                        help="days since enrollment; drug-free after the path (its last drive is zero)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dask-patients", type=int, default=40_000, help="0 skips the Dask scaling")
    parser.add_argument("--dask-chunk-size", type=int, default=1000)
    args = parser.parse_args(argv)

    protocol = load_protocol(args.protocol)
    n, seed = args.patients, args.seed
    course = deterministic_course(protocol, np.arange(n), seed)
    if np.any(course.drive[:, -1] != 0.0):
        raise SystemExit(f"{protocol.name}: the path ends with drugs running; use its own horizon")
    course = dataclasses.replace(course, t_end=max(course.t_end, args.horizon_days))
    everyone = np.arange(n)

    def spread(m: int) -> np.ndarray:
        return np.unique(np.linspace(0, n - 1, min(m, n)).round().astype(np.int64))

    cores = numba.get_num_threads()
    load = os.getloadavg()[0]
    log(f"{protocol.name}: {n} patients, path {', '.join(course.phases)}, horizon day {course.t_end:g}, "
        f"{course.times.size} breakpoints, {cores} threads")
    cohort = engine_bench.Cohort(types.SimpleNamespace(patient_id=course.patient_id), course.p, course.y0,
                                 course.c0, course.times, course.drive, course.bolus, course.t_end)
    rules = np.zeros((0, N_RULE_COLUMNS))  # the course's event parameters are off already
    engine_bench.run_engine(cohort, rules, seed, everyone[:4])  # JIT compilation / cache load

    log(f"engine, {cores} threads (best of {args.repeats})")
    timing_n, y_engine, c_engine = engine_bench.best_engine_run(args.repeats, cohort, rules, seed)
    wall_n = timing_n.wall
    numba.set_num_threads(1)
    log(f"engine, 1 thread (best of {args.repeats})")
    wall_1 = engine_bench.best_engine_run(args.repeats, cohort, rules, seed)[0].wall
    numba.set_num_threads(cores)

    scipy_rows = spread(args.scipy_patients)
    log(f"scipy LSODA, {scipy_rows.size} patients")
    solve_patient(course.y0[0], course.p[0], course.c0[0], course.times[:2], course.drive[0, :2],
                  course.bolus[0, :2], float(course.times[1]), "LSODA", RTOL, ATOL)
    scipy_final = np.empty((scipy_rows.size, N_STATES))
    started = time.perf_counter()
    for k, i in enumerate(scipy_rows):
        scipy_final[k] = solve_patient(course.y0[i], course.p[i], course.c0[i], course.times, course.drive[i],
                                       course.bolus[i], course.t_end, "LSODA", RTOL, ATOL)[0]
    wall_scipy = time.perf_counter() - started

    rr_rows = spread(args.roadrunner_patients)
    log(f"libRoadRunner, {rr_rows.size} patients (loading the SBML documents first, untimed)")
    wall_rr, rr_final, rr_load = roadrunner_runs(course, rr_rows)

    reference_rows = np.union1d(scipy_rows, rr_rows)
    log(f"reference: LSODA rtol {REFERENCE_RTOL:g}, atol {REFERENCE_ATOL:g}, {reference_rows.size} patients")
    reference_final = np.array([solve_patient(course.y0[i], course.p[i], course.c0[i], course.times, course.drive[i],
                                              course.bolus[i], course.t_end, "LSODA", REFERENCE_RTOL,
                                              REFERENCE_ATOL)[0] for i in reference_rows])

    log("flop bound: interpreted replay with a counting RHS, peak FLOP/s")
    replay_rows = spread(args.replay_patients)
    profile = engine_bench.replay(cohort, rules, seed, replay_rows)
    rhs_us = engine_bench.component_costs_us(profile.samples, rules)["rhs"]
    peak_core = scalar_flops_per_s()
    simd_core = simd_flops_per_s()

    dask: dict[str, object] = {}
    if args.dask_patients > 0:
        log(f"dask: {args.dask_patients} patients in chunks of {args.dask_chunk_size}, 1 then 2 workers")
        dask_load = os.getloadavg()[0]
        rates = dask_rates(protocol, args.dask_patients, args.dask_chunk_size, seed)
        dask = {"dask_patients": args.dask_patients, "dask_chunk_size": args.dask_chunk_size,
                "dask_load_average_1min": round(dask_load, 2),
                "dask_patients_per_s_1_worker": round(rates[1], 1),
                "dask_patients_per_s_2_workers": round(rates[2], 1),
                "scaling_efficiency_1_to_2_dask_workers": round(rates[2] / rates[1] / 2, 3)}

    steps = c_engine[:, C_STEPS].astype(float)
    rhs_per_step = profile.rhs.sum() / profile.steps.sum()
    rhs_evals = steps.sum() * rhs_per_step
    attempts = steps.sum() * profile.attempts.sum() / profile.steps.sum()
    flops = rhs_evals * FLOPS_PER_RHS + attempts * DP_FLOPS_PER_ATTEMPT
    bound_s = flops / (cores * peak_core)
    rate_n, rate_1 = n / wall_n, n / wall_1
    rate_scipy, rate_rr = scipy_rows.size / wall_scipy, rr_rows.size / wall_rr

    def disagreement(rows: np.ndarray, other: np.ndarray) -> float:
        return float(f"{np.max(np.abs(y_engine[rows, LOG_STATES] - other[:, LOG_STATES])):.3g}")

    def vs_reference(rows: np.ndarray, final: np.ndarray) -> float:
        reference = reference_final[np.searchsorted(reference_rows, rows)]
        return float(f"{np.max(np.abs(final[:, LOG_STATES] - reference[:, LOG_STATES])):.3g}")

    return {
        "protocol": protocol.name, "phases": list(course.phases), "horizon_days": course.t_end, "patients": n,
        "cores": cores, "load_average_1min": round(load, 2),
        "engine_patients_per_s": round(rate_n, 1),
        "engine_patients_per_s_1_thread": round(rate_1, 1),
        "scaling_efficiency_1_to_2_threads": round(rate_n / rate_1 / cores, 3),
        "scipy_patients": int(scipy_rows.size), "scipy_patients_per_s": round(rate_scipy, 3),
        "roadrunner_patients": int(rr_rows.size), "roadrunner_patients_per_s": round(rate_rr, 2),
        "roadrunner_load_s": round(rr_load, 2),
        "speedup_vs_scipy": round(rate_n / rate_scipy, 1),
        "speedup_vs_roadrunner": round(rate_n / rate_rr, 2),
        "speedup_vs_scipy_1_thread": round(rate_1 / rate_scipy, 1),
        "speedup_vs_roadrunner_1_thread": round(rate_1 / rate_rr, 2),
        "max_abs_ln_state_engine_vs_scipy": disagreement(scipy_rows, scipy_final),
        "max_abs_ln_state_engine_vs_roadrunner": disagreement(rr_rows, rr_final),
        "max_abs_ln_state_engine_vs_reference": disagreement(reference_rows, reference_final),
        "max_abs_ln_state_scipy_vs_reference": vs_reference(scipy_rows, scipy_final),
        "max_abs_ln_state_roadrunner_vs_reference": vs_reference(rr_rows, rr_final),
        "steps_per_patient": round(float(steps.mean()), 1),
        "rhs_evals_per_step": round(float(rhs_per_step), 3),
        "replay_matches_compiled_steps": bool(np.array_equal(profile.steps, profile.compiled_steps)),
        "rhs_evals_per_patient": round(float(rhs_evals / n), 1),
        "flops_per_rhs": FLOPS_PER_RHS, "exps_per_rhs": EXPS_PER_RHS, "exp_flops": EXP_FLOPS,
        "dp_flops_per_attempt": DP_FLOPS_PER_ATTEMPT,
        "flops_per_patient": round(float(flops / n), 0),
        "peak_flops_per_s_per_core": float(f"{peak_core:.4g}"),
        "flop_bound_patients_per_s": round(n / bound_s, 1),
        "fraction_of_flop_bound": round(bound_s / wall_n, 4),
        "simd_peak_flops_per_s_per_core": float(f"{simd_core:.4g}"),
        "fraction_of_simd_flop_bound": round(bound_s * peak_core / simd_core / wall_n, 4),
        "rhs_us_isolated": round(rhs_us, 4),
        "rhs_flops_per_s_isolated": float(f"{FLOPS_PER_RHS / (rhs_us * 1e-6):.4g}"),
        "rhs_share_of_engine_time_1_thread": round(rhs_evals * rhs_us * 1e-6 / wall_1, 3),
        **dask,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
