"""The engine's method for stiff stretches: the additive Runge-Kutta pair ARK5(4)8L[2]SA of Kennedy and Carpenter
(Appl. Numer. Math. 44 (2003) 139-181, tables in the appendix; the ARKODE tables ARK548L2SA_ERK_8_4_5 and
ARK548L2SA_DIRK_8_4_5), made linearly implicit.

The right-hand side is split as f(y) = [f(y) - J (y - y_n)] + J (y - y_n) over a step from y_n, with J a frozen
forward-difference Jacobian: the first part goes through the explicit table, the second (linear) through the
L-stable, stiffly accurate ESDIRK table. Order conditions of an additive method hold for any split, so the step
is of order 5 with an embedded order-4 error estimate for any J: a stale Jacobian (reused across steps) costs
stability, never accuracy. Each implicit stage solves (I - h gamma J) z = r with one LU factorisation per step
size (partial pivoting; the sparse factors are solved through their nonzero columns)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..kernel import kernel
from ..model.layout import N_STATES
from ..model.rhs import derivatives

ARK_STAGES = 8


def _table(entries: dict[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    table = np.zeros((ARK_STAGES, ARK_STAGES))
    for (i, j), (numerator, denominator) in entries.items():
        table[i, j] = float(Fraction(numerator, denominator))
    return table


def _vector(entries: dict[int, tuple[int, int]]) -> np.ndarray:
    vector = np.zeros(ARK_STAGES)
    for i, (numerator, denominator) in entries.items():
        vector[i] = float(Fraction(numerator, denominator))
    return vector


#: Explicit table (ERK part).
ARK_EXPLICIT = _table({
    (1, 0): (41, 100),
    (2, 0): (367902744464, 2072280473677), (2, 1): (677623207551, 8224143866563),
    (3, 0): (1268023523408, 10340822734521), (3, 2): (1029933939417, 13636558850479),
    (4, 0): (14463281900351, 6315353703477), (4, 2): (66114435211212, 5879490589093),
    (4, 3): (-54053170152839, 4284798021562),
    (5, 0): (14090043504691, 34967701212078), (5, 2): (15191511035443, 11219624916014),
    (5, 3): (-18461159152457, 12425892160975), (5, 4): (-281667163811, 9011619295870),
    (6, 0): (19230459214898, 13134317526959), (6, 2): (21275331358303, 2942455364971),
    (6, 3): (-38145345988419, 4862620318723), (6, 4): (-1, 8), (6, 5): (-1, 8),
    (7, 0): (-19977161125411, 11928030595625), (7, 2): (-40795976796054, 6384907823539),
    (7, 3): (177454434618887, 12078138498510), (7, 4): (782672205425, 8267701900261),
    (7, 5): (-69563011059811, 9646580694205), (7, 6): (7356628210526, 4942186776405),
})
#: Diagonal of the implicit table.
ARK_GAMMA = 41.0 / 200.0
#: Implicit table (ESDIRK part), diagonal included.
ARK_IMPLICIT = _table({
    (1, 0): (41, 200), (1, 1): (41, 200),
    (2, 0): (41, 400), (2, 1): (-567603406766, 11931857230679), (2, 2): (41, 200),
    (3, 0): (683785636431, 9252920307686), (3, 2): (-110385047103, 1367015193373), (3, 3): (41, 200),
    (4, 0): (3016520224154, 10081342136671), (4, 2): (30586259806659, 12414158314087),
    (4, 3): (-22760509404356, 11113319521817), (4, 4): (41, 200),
    (5, 0): (218866479029, 1489978393911), (5, 2): (638256894668, 5436446318841),
    (5, 3): (-1179710474555, 5321154724896), (5, 4): (-60928119172, 8023461067671), (5, 5): (41, 200),
    (6, 0): (1020004230633, 5715676835656), (6, 2): (25762820946817, 25263940353407),
    (6, 3): (-2161375909145, 9755907335909), (6, 4): (-211217309593, 5846859502534),
    (6, 5): (-4269925059573, 7827059040749), (6, 6): (41, 200),
    (7, 0): (-872700587467, 9133579230613), (7, 3): (22348218063261, 9555858737531),
    (7, 4): (-1143369518992, 8141816002931), (7, 5): (-39379526789629, 19018526304540),
    (7, 6): (32727382324388, 42900044865799), (7, 7): (41, 200),
})
#: Weights of the order-5 solution (both parts) and of the embedded order-4 solution.
ARK_WEIGHTS = _vector({0: (-872700587467, 9133579230613), 3: (22348218063261, 9555858737531),
                       4: (-1143369518992, 8141816002931), 5: (-39379526789629, 19018526304540),
                       6: (32727382324388, 42900044865799), 7: (41, 200)})
ARK_EMBEDDED_WEIGHTS = _vector({0: (-975461918565, 9796059967033), 3: (78070527104295, 32432590147079),
                                4: (-548382580838, 3424219808633), 5: (-33438840321285, 15594753105479),
                                6: (3629800801594, 4656183773603), 7: (4035322873751, 18575991585200)})
ARK_NODES = _vector({1: (41, 100), 2: (2935347310677, 11292855782101), 3: (1426016391358, 7196633302097),
                     4: (92, 100), 5: (24, 100), 6: (3, 5), 7: (1, 1)})
_ERROR_WEIGHTS = ARK_WEIGHTS - ARK_EMBEDDED_WEIGHTS

FD_RELATIVE_STEP = 1.5e-8  # ~sqrt(machine epsilon)


@kernel
def jacobian(t: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray, f0: np.ndarray,
             jac: np.ndarray, shifted: np.ndarray, dy: np.ndarray, work: np.ndarray) -> bool:
    """Forward-difference Jacobian of the RHS (1/day) at (t, y), where the RHS is f0. Returns False if an
    entry is not finite."""
    for j in range(N_STATES):
        shifted[j] = y[j]
    for j in range(N_STATES):
        step = FD_RELATIVE_STEP * max(1.0, abs(y[j]))
        shifted[j] = y[j] + step
        step = shifted[j] - y[j]  # the step as represented
        derivatives(t, shifted, p, u, c, dy, work)
        shifted[j] = y[j]
        for i in range(N_STATES):
            jac[i, j] = (dy[i] - f0[i]) / step
            if not math.isfinite(jac[i, j]):
                return False
    return True


@kernel
def _nonzero(jac: np.ndarray, i: int, j: int) -> bool:
    """Whether entry (i, j) of the sparsity pattern is nonzero (the diagonal always is)."""
    return jac[i, j] != 0.0 or i == j


@kernel
def column_groups(jac: np.ndarray, group: np.ndarray) -> int:
    """Partition the columns of ``jac`` into groups whose nonzero rows (the diagonal counted) do not overlap, so
    that one RHS evaluation with all of a group's states shifted gives each of its columns (Curtis, Powell and
    Reid, IMA J. Appl. Math. 13 (1974) 117). Greedy in column order; ``group[j]`` receives column j's group.
    Returns the number of groups."""
    n_groups = 0
    for j in range(N_STATES):
        for g in range(n_groups + 1):
            free = True
            for k in range(j):
                if group[k] == g:
                    for i in range(N_STATES):
                        if _nonzero(jac, i, j) and _nonzero(jac, i, k):
                            free = False
                            break
                if not free:
                    break
            if free:
                break
        group[j] = g
        n_groups = max(n_groups, g + 1)
    return n_groups


@kernel
def compressed_jacobian(t: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray, f0: np.ndarray,
                        pattern: np.ndarray, group: np.ndarray, n_groups: int, jac: np.ndarray,
                        shifted: np.ndarray, dy: np.ndarray, work: np.ndarray) -> bool:
    """Forward-difference Jacobian at (t, y) with one RHS evaluation per column group of ``column_groups``,
    entries outside the nonzero ``pattern`` (a Jacobian the groups were made from) set to zero. An entry that
    became nonzero outside the pattern only makes the approximation worse: the ARK step stays of order 5 for any
    matrix. Returns False if an entry is not finite."""
    for g in range(n_groups):
        for j in range(N_STATES):
            shifted[j] = y[j]
            if group[j] == g:
                shifted[j] = y[j] + FD_RELATIVE_STEP * max(1.0, abs(y[j]))
        derivatives(t, shifted, p, u, c, dy, work)
        for j in range(N_STATES):
            if group[j] != g:
                continue
            step = shifted[j] - y[j]
            for i in range(N_STATES):
                if pattern[i, j] != 0.0 or i == j:
                    jac[i, j] = (dy[i] - f0[i]) / step
                    if not math.isfinite(jac[i, j]):
                        return False
                else:
                    jac[i, j] = 0.0
    return True


POWER_ITERATIONS = 24


@kernel
def spectral_radius(jac: np.ndarray, x: np.ndarray, work: np.ndarray) -> float:
    """Estimate of the largest eigenvalue modulus of ``jac`` (1/day) by power iteration from a fixed start
    (deterministic); over the last half of the iterations the geometric mean growth per iteration, which also
    settles for a complex pair or two dominant eigenvalues of equal modulus."""
    for i in range(N_STATES):
        x[i] = 1.0
    log_growth = 0.0
    for iteration in range(POWER_ITERATIONS):
        norm = 0.0
        for i in range(N_STATES):
            total = 0.0
            for j in range(N_STATES):
                total += jac[i, j] * x[j]
            work[i] = total
            norm = max(norm, abs(total))
        if not (norm > 0.0 and math.isfinite(norm)):
            return 0.0 if norm == 0.0 else math.inf
        for i in range(N_STATES):
            x[i] = work[i] / norm
        if iteration >= POWER_ITERATIONS // 2:
            log_growth += math.log(norm)
    return math.exp(log_growth / (POWER_ITERATIONS - POWER_ITERATIONS // 2))


@kernel
def factor(jac: np.ndarray, h_gamma: float, lu: np.ndarray, pivots: np.ndarray, lower: np.ndarray,
           n_lower: np.ndarray, upper: np.ndarray, n_upper: np.ndarray) -> bool:
    """LU factorisation with partial pivoting of I - h_gamma * jac into ``lu`` (unit lower triangle below the
    diagonal), with the nonzero columns of each row of L (``lower``, ``n_lower``) and of U above the diagonal
    (``upper``, ``n_upper``). Returns False if the matrix is singular or not finite."""
    n = N_STATES
    for i in range(n):
        for j in range(n):
            lu[i, j] = -h_gamma * jac[i, j]
        lu[i, i] += 1.0
    for k in range(n):
        pivot = k
        largest = abs(lu[k, k])
        for i in range(k + 1, n):
            if abs(lu[i, k]) > largest:
                largest = abs(lu[i, k])
                pivot = i
        if not (largest > 0.0 and math.isfinite(largest)):
            return False
        pivots[k] = pivot
        if pivot != k:
            for j in range(n):
                lu[k, j], lu[pivot, j] = lu[pivot, j], lu[k, j]
        for i in range(k + 1, n):
            if lu[i, k] != 0.0:
                multiplier = lu[i, k] / lu[k, k]
                lu[i, k] = multiplier
                for j in range(k + 1, n):
                    lu[i, j] -= multiplier * lu[k, j]
    for i in range(n):
        count = 0
        for j in range(i):
            if lu[i, j] != 0.0:
                lower[i, count] = j
                count += 1
        n_lower[i] = count
        count = 0
        for j in range(i + 1, n):
            if lu[i, j] != 0.0:
                upper[i, count] = j
                count += 1
        n_upper[i] = count
    return True


@kernel
def solve(lu: np.ndarray, pivots: np.ndarray, lower: np.ndarray, n_lower: np.ndarray, upper: np.ndarray,
          n_upper: np.ndarray, x: np.ndarray) -> None:
    """Overwrite x with the solution of (I - h_gamma J) z = x, from ``factor``'s output."""
    n = N_STATES
    for k in range(n):
        if pivots[k] != k:
            x[k], x[pivots[k]] = x[pivots[k]], x[k]
    for i in range(n):
        total = x[i]
        for q in range(n_lower[i]):
            total -= lu[i, lower[i, q]] * x[lower[i, q]]
        x[i] = total
    for i in range(n - 1, -1, -1):
        total = x[i]
        for q in range(n_upper[i]):
            total -= lu[i, upper[i, q]] * x[upper[i, q]]
        x[i] = total / lu[i, i]


@kernel
def ark_step(t: float, h: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray, f0: np.ndarray,
             lu: np.ndarray, pivots: np.ndarray, lower: np.ndarray, n_lower: np.ndarray, upper: np.ndarray,
             n_upper: np.ndarray, stage_f: np.ndarray, stage_implicit: np.ndarray, z: np.ndarray,
             stage_y: np.ndarray, y_new: np.ndarray, err: np.ndarray, work: np.ndarray) -> float:
    """One ARK5(4) step of size h (day) from (t, y), where the RHS is f0, with ``lu`` factorising
    I - h' gamma J for some h' (a factor for another step size is the split with the operator (h'/h) J).
    Fills ``y_new`` (order 5) and ``err`` (its difference from the order-4 solution); returns the largest
    serum IL-6 (pg/mL) at the stages."""
    for i in range(N_STATES):
        stage_f[0, i] = f0[i]
        stage_implicit[0, i] = 0.0
    peak = 0.0
    h_gamma = h * ARK_GAMMA
    for s in range(1, ARK_STAGES):
        for i in range(N_STATES):
            total = 0.0
            for j in range(s):
                total += (ARK_EXPLICIT[s, j] * (stage_f[j, i] - stage_implicit[j, i])
                          + ARK_IMPLICIT[s, j] * stage_implicit[j, i])
            z[i] = h * total
            stage_y[i] = z[i]
        solve(lu, pivots, lower, n_lower, upper, n_upper, stage_y)  # stage_y - y_n
        for i in range(N_STATES):
            stage_implicit[s, i] = (stage_y[i] - z[i]) / h_gamma
            stage_y[i] += y[i]
        peak = max(peak, derivatives(t + ARK_NODES[s] * h, stage_y, p, u, c, stage_f[s], work))
    for i in range(N_STATES):
        total = 0.0
        error = 0.0
        for j in range(ARK_STAGES):
            total += ARK_WEIGHTS[j] * stage_f[j, i]
            error += _ERROR_WEIGHTS[j] * stage_f[j, i]
        y_new[i] = y[i] + h * total
        err[i] = h * error
    return peak

