"""A reference solver for the engine: one patient through its breakpoints with SciPy ``solve_ivp`` on the same
right-hand side, boluses and blinatumomab re-anchoring as the compiled engine, without stochastic events or
toxicity management. Used to check the engine's numerics and to benchmark it."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

from ..model.layout import C_BLIN_INTERRUPTED_UNTIL, N_CLASSES, N_STATES, U_BLIN_RATE
from ..model.rhs import derivatives
from .integrator import _apply_bolus, _reanchor_blinatumomab

__all__ = ["solve_patient"]


def solve_patient(y0: NDArray, p: NDArray, c0: NDArray, times: NDArray, drive: NDArray, bolus: NDArray,
                  t_end: float, method: str = "LSODA", rtol: float = 1e-6,
                  atol: float = 1e-8) -> tuple[NDArray, int, int]:
    """Final state, RHS evaluations and Jacobian evaluations of one patient (state ``y0``, parameters ``p``,
    context ``c0``) from ``times[0]`` to ``t_end`` through breakpoints ``times`` (absolute days)."""
    y = np.array(y0, dtype=np.float64)
    c = np.array(c0, dtype=np.float64)
    dy = np.empty(N_STATES)
    death = np.empty(N_CLASSES)
    evaluations = jacobians = 0
    for j in range(times.size):
        t = float(times[j])
        t_next = float(times[j + 1]) if j + 1 < times.size else t_end
        _apply_bolus(t, y, p, c, np.ascontiguousarray(bolus[j]))
        _reanchor_blinatumomab(t, p, c, drive[j, U_BLIN_RATE] if c[C_BLIN_INTERRUPTED_UNTIL] <= t else 0.0)
        if t_next <= t:
            continue
        u = np.ascontiguousarray(drive[j])

        def rhs(time: float, state: NDArray) -> NDArray:
            derivatives(time, state, p, u, c, dy, death)
            return dy.copy()

        solution = solve_ivp(rhs, (t, t_next), y, method=method, rtol=rtol, atol=atol)
        if not solution.success:
            raise RuntimeError(f"solve_ivp failed on [{t}, {t_next}]: {solution.message}")
        y = np.ascontiguousarray(solution.y[:, -1])
        evaluations += solution.nfev
        jacobians += solution.njev
    return y, evaluations, jacobians
