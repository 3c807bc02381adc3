"""The compiled engine against an independent solver.

For a few virtual patients of four bundled protocols (first arm, its first two phases, and the responder
path of AALL1621 through transplant), one window of phases is integrated twice from the same initial state,
parameters, breakpoint schedule and boluses:

* by the engine, ``integrate_batch`` (Dormand-Prince 5(4), absolute tolerance 1e-5 on ln cell counts,
  relative 1e-6 on linear states);
* by SciPy, ``solve_ivp(method="LSODA", rtol=1e-9, atol=1e-12)`` on the same ``derivatives`` through a
  Python wrapper, segment by segment between breakpoints, applying the boluses with ``_apply_bolus`` and
  re-anchoring blinatumomab with ``_reanchor_blinatumomab`` at each breakpoint, as ``integrate_patient`` does.

Everything stochastic or discontinuous that the engine adds to the ODE is switched off, so both solve the
same initial value problem: clone extinction (thresholds +inf), clone resampling after a bottleneck (resample
counters at their maximum: the extinction thresholds alone do not disable it), relapse monitoring
(C_REMISSION 0), infection/TRM/SOS deaths (thresholds +inf), fatal CRS (``crs_fatal_il6_factor`` +inf, read
only by the toxicity monitor) and clinical management (empty rule table).

Tolerances on the final state: ln cell counts (and ln K of the extinction layer) within 1e-3 absolute plus
1e-4 of the state's change over the window (``engine_tolerance.py``). The engine's error is a global one that
grows with the distance it integrates: measured with calibrated-0.14 (whose values calibrated-0.15 keeps), the
worst is 1.84e-3 in ln K of the bulk class in MT103-205's two cycles, which moved it by 58 (3.2e-5 of the
change); every other case is within 4e-4 (at most 7.6e-6 of its change). Linear states (inotuzumab amounts,
liver injury, cumulative hazards) within 1e-4 relative where the reference exceeds 1e-9 in magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from leukosim.engine.reference import deterministic_course, solve_patient
from leukosim.engine.integrator import (
    MAX_RESAMPLES, N_RECORD, N_RULE_COLUMNS, integrate_batch,
)
from leukosim.model.layout import (
    C_EVENT, C_RESAMPLES, C_STATUS, EVENT_NONE, N_BOLUS, N_CLASSES, N_STATES, S_CAR_EXHAUSTED, S_INO_CENTRAL,
    S_LEUKEMIA, STATE_NAMES, STATUS_OK,
)
from leukosim.population.streams import Stream
from leukosim.protocol.load import load_protocol

from engine_tolerance import ln_tolerance

SEED = 3
PATIENTS = np.array([0, 1, 2, 3], dtype=np.int64)
#: (protocol, phases of the first arm integrated back to back)
CASES = [
    ("eliana", ("lymphodepletion", "infusion")),  # fludarabine/cyclophosphamide, CAR-T bolus and expansion
    ("blina-rr-peds", ("cycle-1", "cycle-2")),  # step dose, stop and restart: blinatumomab re-anchoring
    ("aall1621", ("cycle-1", "cycle-2-responder")),  # inotuzumab boluses, time-dependent clearance
    # conditioning, graft, GVL, TRM, SOS. The SOS hazard drops at the end of the post-transplant window (a
    # jump in the RHS inside a segment): stepping across it left hazard_sos up to 1.2e-4 relative off before
    # the engine made the window end a step boundary; about 5e-6 since.
    ("aall1621", ("cycle-1", "cycle-2-responder", "allogeneic-hsct")),
    ("aieop-bfm-2000", ("protocol-IA", "protocol-IB")),  # chemotherapy drives
]

REFERENCE_RTOL = 1.0e-9
REFERENCE_ATOL = 1.0e-12
LOG_STATES = np.arange(S_LEUKEMIA, S_CAR_EXHAUSTED + 1)
LINEAR_STATES = np.arange(S_INO_CENTRAL, N_STATES)
LINEAR_TOLERANCE = 1.0e-4  # relative
LINEAR_FLOOR = 1.0e-9  # linear states smaller than this in the reference are not compared


def setup(name: str, phases: tuple[str, ...]) -> dict[str, NDArray | float]:
    """Initial state, parameters and context with events off, and the schedule of ``phases`` of the first
    arm back to back (days since enrollment)."""
    course = deterministic_course(load_protocol(name), PATIENTS, SEED, phases=phases)
    return {"y": course.y0, "p": course.p, "c": course.c0, "times": course.times, "drive": course.drive,
            "bolus": course.bolus, "t_end": course.t_end}


def engine(case: dict) -> tuple[NDArray, NDArray]:
    y, c = case["y"].copy(), case["c"].copy()
    n, breakpoints = y.shape[0], case["times"].size
    integrate_batch(y, case["p"], c, np.ascontiguousarray(np.broadcast_to(case["times"], (n, breakpoints))),
                    np.ascontiguousarray(case["drive"]), np.ascontiguousarray(case["bolus"]),
                    np.full(n, breakpoints, dtype=np.int64), np.full(n, case["t_end"]),
                    np.zeros((0, N_RULE_COLUMNS)), SEED, PATIENTS, Stream.block("extinction"), np.empty(0),
                    np.empty((n, 0, N_RECORD)))
    return y, c


def reference(y0: NDArray, p: NDArray, c0: NDArray, times: NDArray, drive: NDArray, bolus: NDArray,
              t_end: float) -> NDArray:
    """One patient with SciPy ``solve_ivp`` (LSODA at tight tolerances), breakpoint by breakpoint."""
    return solve_patient(y0, p, c0, times, drive, bolus, t_end, "LSODA", REFERENCE_RTOL, REFERENCE_ATOL)[0]


@pytest.mark.parametrize(("name", "phases"), CASES,
                         ids=[f"{name}:{'+'.join(phases)}" for name, phases in CASES])
def test_engine_matches_reference_solver(name: str, phases: tuple[str, ...]) -> None:
    case = setup(name, phases)
    assert case["bolus"].shape[2] == N_BOLUS
    y_engine, c_engine = engine(case)
    assert np.all(c_engine[:, C_EVENT] == EVENT_NONE)
    assert np.all(c_engine[:, C_STATUS] == STATUS_OK)
    assert np.all(c_engine[:, C_RESAMPLES:C_RESAMPLES + N_CLASSES] == MAX_RESAMPLES)  # no resampling
    y_reference = np.array([reference(case["y"][i], case["p"][i], case["c"][i], case["times"],
                                      case["drive"][i], case["bolus"][i], case["t_end"])
                            for i in range(PATIENTS.size)])

    log_error = np.abs(y_engine[:, LOG_STATES] - y_reference[:, LOG_STATES])
    allowed = ln_tolerance(y_reference[:, LOG_STATES], case["y"][:, LOG_STATES])
    worst = np.unravel_index(np.argmax(log_error / allowed), log_error.shape)
    assert np.all(log_error <= allowed), (
        f"{name}: {STATE_NAMES[LOG_STATES[worst[1]]]} of patient {PATIENTS[worst[0]]} differs by "
        f"{log_error[worst]:.3g} (ln cells; allowed {allowed[worst]:.3g}); engine "
        f"{y_engine[worst[0], LOG_STATES[worst[1]]]:.8g}, reference {y_reference[worst[0], LOG_STATES[worst[1]]]:.8g}")

    ref = y_reference[:, LINEAR_STATES]
    compared = np.abs(ref) > LINEAR_FLOOR
    difference = np.abs(y_engine[:, LINEAR_STATES] - ref)
    relative = np.where(compared, difference / np.where(compared, np.abs(ref), 1.0), 0.0)
    worst = np.unravel_index(np.argmax(relative), relative.shape)
    assert relative.max() <= LINEAR_TOLERANCE, (
        f"{name}: {STATE_NAMES[LINEAR_STATES[worst[1]]]} of patient {PATIENTS[worst[0]]} differs by "
        f"{relative.max():.3g} (relative); engine {y_engine[worst[0], LINEAR_STATES[worst[1]]]:.8g}, "
        f"reference {ref[worst]:.8g}")
