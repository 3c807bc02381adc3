"""The engine's linearly implicit ARK5(4) (``engine.implicit``), used where Dormand-Prince is stability-limited.

* Its tables satisfy the order conditions of an additive Runge-Kutta method up to order 4 for every coupling
  of the explicit (E) and implicit (I) parts, and the quadrature conditions to order 5 (4 for the embedded
  weights); Kennedy and Carpenter (2003) give the rest. A transcription error in one coefficient breaks them.
* A stiff linear system with a known solution, through the public engine API: two-compartment inotuzumab PK
  with constant clearance and an intercompartmental clearance 1000 L/day (eigenvalue about -500/day, Dormand-
  Prince would need ~10^4 steps for 60 days). The engine's amounts agree with the matrix exponential within
  1e-5 relative, in fewer than 500 steps (so the implicit method took them).
* The eliana course to day 730 (CAR-T, then two years of B-cell aplasia whose B-lineage mode, about -2.7/day,
  makes the explicit method stability-limited) against SciPy LSODA at rtol 1e-9, atol 1e-12 on the same RHS
  (``engine.reference.solve_patient``), with the tolerances of ``tests/test_reference_solver.py``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.linalg import expm

from leukosim.engine.implicit import (
    ARK_EMBEDDED_WEIGHTS, ARK_EXPLICIT, ARK_GAMMA, ARK_IMPLICIT, ARK_NODES, ARK_WEIGHTS,
)
from leukosim.engine.integrator import ATOL_LINEAR, N_RECORD, N_RULE_COLUMNS, integrate_batch
from leukosim.engine.reference import DeterministicCourse, deterministic_course, solve_patient
from leukosim.model.layout import (
    B_INO_MG, C_STATUS, C_STEPS, D, S_CAR_EXHAUSTED, S_INO_CENTRAL, S_INO_PERIPHERAL, S_LEUKEMIA, STATUS_OK,
)
from leukosim.model.registry import INDEX
from leukosim.population.streams import Stream
from leukosim.protocol.load import load_protocol

SEED = 3
PATIENTS = np.array([0, 1, 2, 3], dtype=np.int64)
LOG_STATES = np.arange(S_LEUKEMIA, S_CAR_EXHAUSTED + 1)


def test_ark_tables_satisfy_order_conditions() -> None:
    tables = {"E": ARK_EXPLICIT, "I": ARK_IMPLICIT}
    b, c = ARK_WEIGHTS, ARK_NODES
    assert np.allclose(ARK_EXPLICIT.sum(axis=1), c, atol=1e-14)
    assert np.allclose(ARK_IMPLICIT.sum(axis=1), c, atol=1e-14)
    assert np.all(np.triu(ARK_EXPLICIT) == 0.0)
    assert np.allclose(np.diag(ARK_IMPLICIT)[1:], ARK_GAMMA) and ARK_IMPLICIT[0, 0] == 0.0
    assert np.allclose(ARK_IMPLICIT[-1], b, atol=1e-15)  # stiffly accurate
    for k in range(1, 6):
        assert b @ c ** (k - 1) == pytest.approx(1.0 / k, abs=1e-14)
    for k in range(1, 5):
        assert ARK_EMBEDDED_WEIGHTS @ c ** (k - 1) == pytest.approx(1.0 / k, abs=1e-14)
    for x in "EI":
        a = tables[x]
        assert b @ a @ c == pytest.approx(1.0 / 6.0, abs=1e-14)
        assert b @ (c * (a @ c)) == pytest.approx(1.0 / 8.0, abs=1e-14)
        assert b @ a @ c ** 2 == pytest.approx(1.0 / 12.0, abs=1e-14)
    for x, y in itertools.product("EI", repeat=2):
        assert b @ tables[x] @ tables[y] @ c == pytest.approx(1.0 / 24.0, abs=1e-14)


def run_engine(course: DeterministicCourse, y0: NDArray, p: NDArray, bolus: NDArray) -> tuple[NDArray, NDArray]:
    y, c = y0.copy(), course.c0.copy()
    n, breakpoints = y.shape[0], course.times.size
    integrate_batch(y, np.ascontiguousarray(p), c,
                    np.ascontiguousarray(np.broadcast_to(course.times, (n, breakpoints))),
                    np.ascontiguousarray(course.drive), np.ascontiguousarray(bolus),
                    np.full(n, breakpoints, dtype=np.int64), np.full(n, course.t_end), np.zeros((0, N_RULE_COLUMNS)),
                    SEED, course.patient_id, Stream.block("extinction"), np.empty(0), np.empty((n, 0, N_RECORD)))
    return y, c


def test_stiff_linear_system_matches_matrix_exponential() -> None:
    course = deterministic_course(load_protocol("eliana"), PATIENTS, SEED, phases=("lymphodepletion", "infusion"))
    p = course.p.copy()
    p[:, INDEX["ino_intercompartmental_clearance"]] = 1000.0  # L/day
    p[:, D["ino_clearance_time"]] = 0.0  # constant clearance: a linear, time-invariant system
    bolus = course.bolus.copy()
    dose = 1.0  # mg at day 0
    bolus[:, 0, B_INO_MG] = dose
    y, c = run_engine(course, course.y0, p, bolus)
    assert np.all(c[:, C_STATUS] == STATUS_OK)
    assert np.all(c[:, C_STEPS] < 500)
    for row in range(PATIENTS.size):
        clearance, q = p[row, D["ino_clearance_ss"]], p[row, INDEX["ino_intercompartmental_clearance"]]
        central, peripheral = p[row, D["ino_central_volume"]], p[row, INDEX["ino_peripheral_volume"]]
        rates = np.array([[-(clearance + q) / central, q / peripheral], [q / central, -q / peripheral]])
        exact = expm(rates * (course.t_end - course.times[0])) @ np.array([dose, 0.0])
        engine_amounts = y[row, [S_INO_CENTRAL, S_INO_PERIPHERAL]]
        # within the engine's per-step tolerance (ATOL_LINEAR + RTOL |y|) accumulated over the course
        assert np.allclose(engine_amounts, exact, rtol=1e-5, atol=10 * ATOL_LINEAR), (row, engine_amounts, exact)


def test_engine_matches_reference_through_stiff_follow_up() -> None:
    course = deterministic_course(load_protocol("eliana"), PATIENTS, SEED)
    course = dataclasses.replace(course, t_end=730.0)
    assert np.all(course.drive[:, -1] == 0.0)  # drug-free to day 730 after the path
    y, c = run_engine(course, course.y0, course.p, course.bolus)
    assert np.all(c[:, C_STATUS] == STATUS_OK)
    for row in range(PATIENTS.size):
        reference = solve_patient(course.y0[row], course.p[row], course.c0[row], course.times, course.drive[row],
                                  course.bolus[row], course.t_end, "LSODA", 1.0e-9, 1.0e-12)[0]
        difference = np.abs(y[row, LOG_STATES] - reference[LOG_STATES])
        # measured with calibrated-0.11: 1.03e-3, in the ln counts of extinct-level clones (about -300 ln cells)
        assert difference.max() < 2.0e-3, (row, difference.max())
