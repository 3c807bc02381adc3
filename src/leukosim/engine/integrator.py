"""The compiled, batched solver: adaptive Dormand-Prince 5(4) between schedule breakpoints (so every dose
and block boundary is a step boundary), switching to the linearly implicit ARK5(4) of ``engine.implicit`` when
the steps become limited by stability rather than accuracy (Hairer's test: step times the estimated spectral
radius above 3.25, DP5's real-axis bound being 3.31, on STIFF_VOTES steps) and the step cap leaves the implicit
method room for IMPLICIT_GAIN times longer steps (back to DP5 when it no longer does); with located threshold
events (clone extinction, morphological relapse, death hazards, SOS/VOD), toxicity grading and clinical
management at every accepted step, and one status per patient. Both methods share the error norm, step control,
step caps and boundaries. Patients of a batch run in parallel (numba prange) and never share state."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..kernel import kernel
from ..model.layout import (
    B_CAR_CELLS, B_HSCT, B_INO_MG, C_ALIVE, C_APLASIA_DAYS, C_BLIN_AMOUNT, C_BLIN_CSS_MAX,
    C_BLIN_INTERRUPTED_UNTIL, C_BLIN_RATE, C_BLIN_TIME, C_CAR_AUC28, C_CAR_CMAX, C_CAR_INFUSION,
    C_CAR_PRESENT, C_CAR_TMAX, C_CLONE_SIZE, C_CRS_MAX, C_CRS_ONSET, C_EVENT, C_EVENT_TIME,
    C_EXTINCTION_THRESHOLD, C_HSCT_TIME, C_ICANS_MAX, C_IL6_MAX, C_INFECTION_THRESHOLD, C_INO_CMAX,
    C_INO_FIRST, C_INTERRUPTION_LOG, C_INTERRUPTIONS, C_RECORD_POSITION, C_RELAPSE_CLASS, C_REMISSION,
    C_RESAMPLES, C_SOS_FATAL_U,
    C_SOS_THRESHOLD, C_STEP_SIZE,
    C_SOS_TIME, C_STATUS, C_STEPS, C_STEROID_DOSES, C_STEROID_TIME, C_TOCILIZUMAB_DOSES,
    C_TOCILIZUMAB_TIME, C_TRM_THRESHOLD, D, EVENT_DEATH_CRS, EVENT_DEATH_INFECTION, EVENT_DEATH_SOS,
    EVENT_DEATH_TRM, EVENT_NONE, EVENT_RELAPSE, MAX_LOGGED_INTERRUPTIONS, N_CLASSES, N_LN_STATES, N_STATES,
    S_B_MATURE, S_B_PRECURSOR, S_CAR_EFFECTOR, S_CAR_EXHAUSTED, S_CAR_MEMORY, S_EXTINCTION, S_HAZARD_INFECTION,
    S_HAZARD_SOS,
    S_HAZARD_TRM, S_INO_CENTRAL, S_LEUKEMIA, S_MARROW, S_T_ACTIVE, S_T_RESTING, STATUS_NONFINITE,
    STATUS_OK, STATUS_STEP_UNDERFLOW, STATUS_TOO_MANY_STEPS, U_BLIN_RATE,
)
from ..model.readouts import (
    N_READOUTS, READOUT_NAMES, b_cells_per_ul, car_copies_per_ug, marrow_leukemic_fraction, readouts,
)
from ..model.registry import INDEX
from ..model.rhs import (
    RHS_WORK, SOS_WINDOW_DAYS, blinatumomab_concentration, derivatives, inotuzumab_concentration,
)
from ..model.toxicity import crs_signs, inflammatory_signal, neuro_signs
from ..observe.assays import B_CELL_APLASIA_PER_UL
from ..observe.grading import crs_grade_astct, icans_grade_astct
from .extinction import (
    RESAMPLE_PROBABILITY, extinction_probability, extinction_threshold, surviving_clone_size,
)
from .implicit import (
    ARK_GAMMA, ARK_STAGES, ark_step, column_groups, compressed_jacobian, factor, jacobian, spectral_radius,
)
from ..population.streams import uniform

# management rule columns
R_TRIGGER = 0  # 0: CRS grade, 1: ICANS grade
R_GRADE = 1
R_NEEDS_BLINATUMOMAB = 2
R_ACTION = 3  # ACTION_*
R_DAYS = 4
N_RULE_COLUMNS = 5
ACTION_TOCILIZUMAB = 0
ACTION_STEROID = 1
ACTION_INTERRUPT = 2

# solver settings
ATOL_LOG = 1.0e-5  # absolute tolerance on ln cell counts (= relative tolerance on counts)
RTOL = 1.0e-6
ATOL_LINEAR = 1.0e-9
MAX_STEPS = 200_000  # attempted steps per interval
LOCATE_ACCEPT = 0.98  # an event crossing in the last 2% of a step is applied at the step's end
LOCATE_OVERSHOOT = 1.01
LOCATE_MIN_STEP = 1.0e-6  # day
MIN_STEP = 1.0e-9  # day
INITIAL_STEP = 0.1  # day, first trial step of a patient
RELAPSE_FRACTION = 0.05  # morphological relapse: >= 5% marrow blasts (calibration_targets C6)
MAX_RESAMPLES = 15
MAX_TOCILIZUMAB_DOSES = 4  # Kymriah label: max 4 doses, >= 8 h apart
TOCILIZUMAB_INTERVAL = 8.0 / 24.0
STEROID_INTERVAL = 1.0
STIFF_H_RHO = 3.25  # DP5 step x spectral-radius estimate above which a step counts as stability-limited
STIFF_VOTES = 15  # stability-limited DP5 steps (without 6 calm ones in a row between) before switching
CALM_VOTES = 6
#: An ARK5(4) step costs about 5 DP5 steps (8 RHS evaluations, a Jacobian by column groups, an LU factorisation
#: and 7 sparse solves against 6 RHS evaluations); the implicit method is used only where the step cap lets it
#: take steps at least this many times longer than DP5's stable step STIFF_H_RHO / spectral radius.
IMPLICIT_GAIN = 5.0
N_VECTORS = 10  # state-sized scratch of a Dormand-Prince step: 7 stages, stage argument, new state, error
FULL_JACOBIAN_EVERY = 10  # ARK steps between full Jacobians (column groups of the sparsity pattern in between)


_SW = (0, INDEX["switch_cd19_loss"], INDEX["switch_cd22_low"], INDEX["switch_lineage"])
_CAR_VIABLE = INDEX["car_viable_fraction"]
_CAR_RHO = INDEX["car_expansion_rate"]
_CAR_EX = INDEX["car_exhaustion_rate"]
_CAR_XDEATH = INDEX["car_exhausted_death"]
_COND_LEUK = INDEX["hsct_conditioning_leukemia_log10_kill"]
_COND_LYMPH = INDEX["hsct_conditioning_lymphocyte_log10_kill"]
_ENGRAFT = INDEX["hsct_engraftment_fraction"]
_SOS_FATALITY = INDEX["sos_fatality"]
_TOCI_EFFECT = INDEX["tocilizumab_effect"]
_STEROID_EFFECT = INDEX["steroid_effect"]
_FEVER = INDEX["crs_fever_il6"]
_HYPOTENSION = INDEX["crs_hypotension_il6"]
_HYPOXIA = INDEX["crs_hypoxia_il6"]
_LEVEL_RATIO = INDEX["crs_sign_level_ratio"]
_FATAL = INDEX["crs_fatal_il6_factor"]
_ICANS = INDEX["icans_il6"]
_BLIN_K = D["blin_elimination"]
_BLIN_V = D["blin_volume"]
_AGE = D["age_years"]
_MARROW_NORMAL = D["marrow_normal"]
_T_NORMAL = D["t_normal"]
_B_PRECURSOR_NORMAL = D["b_precursor_normal"]
_CRS_SUSC = D["crs_susceptibility"]
_ICANS_SUSC = D["icans_susceptibility"]
_FITNESS = D["t_cell_fitness"]
_CAR_EX_FACTOR = D["car_exhaustion_factor"]
_IL6_BASELINE = INDEX["il6_baseline"]

# Dormand-Prince 5(4) tableau
_C2, _C3, _C4, _C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
_A21 = 1 / 5
_A31, _A32 = 3 / 40, 9 / 40
_A41, _A42, _A43 = 44 / 45, -56 / 15, 32 / 9
_A51, _A52, _A53, _A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
_A61, _A62, _A63, _A64, _A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
_B1, _B3, _B4, _B5, _B6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
_E1, _E3, _E4, _E5, _E6, _E7 = (71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)

EXTINCTION_STREAM_STRIDE = 32
#: Trajectory record columns: the readouts, then serum IL-6 (pg/mL) and blinatumomab (ng/mL).
REC_IL6 = N_READOUTS
REC_BLINATUMOMAB = N_READOUTS + 1
N_RECORD = N_READOUTS + 2
RECORD_NAMES = (*READOUT_NAMES, "il6_pg_per_mL", "blinatumomab_ng_per_mL")


@kernel
def _record(t: float, y: np.ndarray, p: np.ndarray, c: np.ndarray, il6: float, record_t: np.ndarray,
            record_out: np.ndarray) -> None:
    """Fill every trajectory record due at or before t."""
    position = int(c[C_RECORD_POSITION])
    while position < record_t.size and record_t[position] <= t + 1e-12:
        readouts(y, p, c, record_out[position])
        record_out[position, REC_IL6] = il6
        record_out[position, REC_BLINATUMOMAB] = blinatumomab_concentration(t, p, c)
        position += 1
    c[C_RECORD_POSITION] = position


@kernel
def _reanchor_blinatumomab(t: float, p: np.ndarray, c: np.ndarray, new_rate: float) -> None:
    amount = blinatumomab_concentration(t, p, c) * p[_BLIN_V]
    c[C_BLIN_AMOUNT] = amount
    c[C_BLIN_TIME] = t
    c[C_BLIN_RATE] = new_rate


@kernel
def _log_add(a: float, b: float) -> float:
    """ln(e^a + e^b)."""
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


@kernel
def _inflow_small(k: int, y: np.ndarray, p: np.ndarray, c: np.ndarray) -> bool:
    """Whether phenotype switching feeds class k with less than one cell per day (extinction possible)."""
    if k == 0 or c[C_ALIVE] < 0.5:
        return True
    return p[_SW[k]] * math.exp(y[S_LEUKEMIA]) < 1.0


@kernel
def _apply_bolus(t: float, y: np.ndarray, p: np.ndarray, c: np.ndarray, bolus: np.ndarray) -> None:
    if bolus[B_INO_MG] > 0.0:
        y[S_INO_CENTRAL] += bolus[B_INO_MG]
        if c[C_INO_FIRST] < 0.0:
            c[C_INO_FIRST] = t
    if bolus[B_CAR_CELLS] > 0.0:
        cells = bolus[B_CAR_CELLS] * p[_CAR_VIABLE]
        if c[C_CAR_PRESENT] > 0.5:
            y[S_CAR_EFFECTOR] = _log_add(y[S_CAR_EFFECTOR], math.log(cells))
        else:
            c[C_CAR_PRESENT] = 1.0
            y[S_CAR_EFFECTOR] = math.log(cells)
            y[S_CAR_MEMORY] = math.log(0.01 * cells)
            # exhausted cells are seeded at the ratio to effectors that the model's exhaustion kinetics sustain
            # under full antigen signal, ex x factor / (x_death + rho x fitness) (a few per cent, the order of
            # exhaustion-marker-positive cells in an expanded product); from far below it the pool's ln-rate
            # (~50/day) is a stiff transient. Exhausted cells do not kill; the seed decays at x_death.
            expansion = p[_CAR_RHO] * p[_FITNESS]
            y[S_CAR_EXHAUSTED] = math.log(p[_CAR_EX] * p[_CAR_EX_FACTOR] / (p[_CAR_XDEATH] + expansion) * cells)
        c[C_CAR_INFUSION] = t
    if bolus[B_HSCT] > 0.0:
        # conditioning thins every clone: survival s per cell; Kendall's K gains (1/s - 1)/m
        ln_survival = -p[_COND_LEUK] * math.log(10.0)
        for k in range(N_CLASSES):
            if c[C_ALIVE + k] > 0.5:
                ln_m = y[S_LEUKEMIA + k]
                y[S_EXTINCTION + k] = _log_add(y[S_EXTINCTION + k], math.log(math.expm1(-ln_survival)) - ln_m)
                y[S_LEUKEMIA + k] = ln_m + ln_survival
        lymph_kill = p[_COND_LYMPH] * math.log(10.0)
        y[S_B_PRECURSOR] -= lymph_kill
        y[S_B_MATURE] -= lymph_kill
        y[S_T_ACTIVE] -= lymph_kill
        y[S_CAR_EFFECTOR] -= lymph_kill
        y[S_CAR_MEMORY] -= lymph_kill
        y[S_CAR_EXHAUSTED] -= lymph_kill
        # donor graft: haematopoiesis, B lymphopoiesis and T cells restart from a small fraction of normal (the
        # graft's B precursors also keep the source-driven refill of an emptied compartment finite)
        y[S_MARROW] = math.log(p[_ENGRAFT] * p[_MARROW_NORMAL])
        y[S_B_PRECURSOR] = _log_add(y[S_B_PRECURSOR], math.log(p[_ENGRAFT] * p[_B_PRECURSOR_NORMAL]))
        y[S_T_RESTING] = math.log(p[_ENGRAFT] * p[_T_NORMAL])
        c[C_HSCT_TIME] = t


@kernel
def _event_values(y: np.ndarray, p: np.ndarray, c: np.ndarray, g: np.ndarray) -> None:
    """Event functions; an event fires when its value crosses zero upwards. Disabled events are -inf."""
    for k in range(N_CLASSES):
        g[k] = -np.inf
        if c[C_ALIVE + k] > 0.5 and _inflow_small(k, y, p, c):
            g[k] = y[S_EXTINCTION + k] - c[C_EXTINCTION_THRESHOLD + k]
    g[4] = -np.inf
    if c[C_REMISSION] > 0.5:
        g[4] = math.log(marrow_leukemic_fraction(y, p, c)) - math.log(RELAPSE_FRACTION)
    g[5] = y[S_HAZARD_INFECTION] - c[C_INFECTION_THRESHOLD]
    g[6] = y[S_HAZARD_TRM] - c[C_TRM_THRESHOLD]
    g[7] = y[S_HAZARD_SOS] - c[C_SOS_THRESHOLD] if c[C_SOS_TIME] < 0.0 else -np.inf


N_EVENTS = 8


@kernel(inline="always")
def _past_threshold(k: int, y: np.ndarray, c: np.ndarray) -> bool:
    """Whether clone k's extinction-layer state has reached its extinction threshold."""
    return y[S_EXTINCTION + k] >= c[C_EXTINCTION_THRESHOLD + k]


@kernel
def _extinguish_crossed(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> None:
    """Apply extinctions whose threshold a jump (transplant conditioning) carried a clone past."""
    for k in range(N_CLASSES):
        if c[C_ALIVE + k] > 0.5 and _inflow_small(k, y, p, c) and _past_threshold(k, y, c):
            c[C_ALIVE + k] = 0.0


@kernel
def _terminate(c: np.ndarray, event: int, t: float) -> None:
    c[C_EVENT] = event
    c[C_EVENT_TIME] = t


@kernel
def _apply_event(which: int, t: float, y: np.ndarray, c: np.ndarray, p: np.ndarray) -> bool:
    """Apply a located event; return True if it ends the patient's protocol course."""
    if which < N_CLASSES:
        c[C_ALIVE + which] = 0.0
        return False
    if which == 4:
        largest = -np.inf
        for k in range(N_CLASSES):
            if c[C_ALIVE + k] > 0.5 and y[S_LEUKEMIA + k] > largest:
                largest = y[S_LEUKEMIA + k]
                c[C_RELAPSE_CLASS] = k
        _terminate(c, EVENT_RELAPSE, t)
        return True
    if which == 5:
        _terminate(c, EVENT_DEATH_INFECTION, t)
        return True
    if which == 6:
        _terminate(c, EVENT_DEATH_TRM, t)
        return True
    c[C_SOS_TIME] = t
    if c[C_SOS_FATAL_U] < p[_SOS_FATALITY]:
        _terminate(c, EVENT_DEATH_SOS, t)
        return True
    return False


@kernel
def _fraction_below(start: float, end: float, threshold: float) -> float:
    """Fraction of a step during which a positive quantity going from ``start`` to ``end`` (log-linearly) is at
    or below ``threshold``."""
    if start <= threshold and end <= threshold:
        return 1.0
    if start > threshold and end > threshold:
        return 0.0
    if not (start > 0.0 and end > 0.0):  # a count below the smallest double: no log-linear path
        return 1.0 if end <= threshold else 0.0
    crossing = math.log(threshold / start) / math.log(end / start)
    return 1.0 - crossing if end <= threshold else crossing


@kernel
def _monitor(t: float, h: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray, il6: float,
             rules: np.ndarray, seed: int, patient_id: int, extinction_stream: int, dy: np.ndarray,
             b_cells_start: float) -> bool:
    """Toxicity grading, management, kinetics and clone resampling after an accepted step of h days that
    started with ``b_cells_start`` B cells per uL. Returns True if the state changed (derivatives must be
    re-evaluated)."""
    changed = False
    if not math.isfinite(il6):
        c[C_STATUS] = STATUS_NONFINITE
        return False
    toci = c[C_TOCILIZUMAB_TIME] >= 0.0 and t - c[C_TOCILIZUMAB_TIME] < 14.0
    steroid = c[C_STEROID_TIME] >= 0.0 and t - c[C_STEROID_TIME] < 7.0
    treated = c[C_TOCILIZUMAB_TIME] >= 0.0 or c[C_STEROID_TIME] >= 0.0
    factor = (p[_TOCI_EFFECT] if toci else 1.0) * (p[_STEROID_EFFECT] if steroid else 1.0)
    signal = inflammatory_signal(il6, p[_IL6_BASELINE], p[_CRS_SUSC], factor)
    crs = 0
    if signal >= p[_FEVER] or treated:
        fever, hypotension, hypoxia = crs_signs(signal, p[_FEVER], p[_HYPOTENSION], p[_HYPOXIA], p[_LEVEL_RATIO])
        crs = crs_grade_astct(fever, hypotension, hypoxia, treated)
    if crs > c[C_CRS_MAX]:
        c[C_CRS_MAX] = crs
    if crs >= 1 and c[C_CRS_ONSET] < 0.0:
        c[C_CRS_ONSET] = t
    if il6 > c[C_IL6_MAX]:
        c[C_IL6_MAX] = il6
    if signal >= p[_FATAL] * p[_HYPOTENSION] * p[_LEVEL_RATIO] ** 2:  # a multiple of the multi-vasopressor level
        c[C_CRS_MAX] = 5.0
        _terminate(c, EVENT_DEATH_CRS, t)
        return False
    neuro = inflammatory_signal(il6, p[_IL6_BASELINE], p[_ICANS_SUSC], p[_STEROID_EFFECT] if steroid else 1.0)
    icans = 0
    if neuro >= p[_ICANS]:
        impairment, consciousness, seizure, motor, edema = neuro_signs(neuro, p[_ICANS])
        age = p[_AGE]
        if consciousness >= 4:
            score = -1
        elif age >= 12.0:
            score = 10 - impairment  # ICE score (ages >= 12)
        else:
            score = 2 * impairment  # CAPD score (ages < 12)
        icans = icans_grade_astct(age, score, consciousness, seizure, motor, edema)
    if icans > c[C_ICANS_MAX]:
        c[C_ICANS_MAX] = icans

    blin_running = c[C_BLIN_RATE] > 0.0
    for r in range(rules.shape[0]):
        grade = crs if rules[r, R_TRIGGER] < 0.5 else icans
        if grade < rules[r, R_GRADE]:
            continue
        if rules[r, R_NEEDS_BLINATUMOMAB] > 0.5 and not blin_running:
            continue
        action = int(rules[r, R_ACTION])
        if action == ACTION_TOCILIZUMAB:
            if (c[C_TOCILIZUMAB_DOSES] < MAX_TOCILIZUMAB_DOSES
                    and (c[C_TOCILIZUMAB_TIME] < 0.0 or t - c[C_TOCILIZUMAB_TIME] >= TOCILIZUMAB_INTERVAL)):
                c[C_TOCILIZUMAB_TIME] = t
                c[C_TOCILIZUMAB_DOSES] += 1
        elif action == ACTION_STEROID:
            if c[C_STEROID_TIME] < 0.0 or t - c[C_STEROID_TIME] >= STEROID_INTERVAL:
                c[C_STEROID_TIME] = t
                c[C_STEROID_DOSES] += 1
        elif blin_running:
            _reanchor_blinatumomab(t, p, c, 0.0)
            c[C_BLIN_INTERRUPTED_UNTIL] = t + rules[r, R_DAYS]
            logged = int(c[C_INTERRUPTIONS])
            if logged < MAX_LOGGED_INTERRUPTIONS:
                c[C_INTERRUPTION_LOG + 2 * logged] = t
                c[C_INTERRUPTION_LOG + 2 * logged + 1] = t + rules[r, R_DAYS]
            c[C_INTERRUPTIONS] += 1
            blin_running = False
            changed = True

    if c[C_CAR_PRESENT] > 0.5:
        copies = car_copies_per_ug(y, p, c)
        if copies > c[C_CAR_CMAX]:
            c[C_CAR_CMAX] = copies
            c[C_CAR_TMAX] = t
        since = t - c[C_CAR_INFUSION]
        if since <= 28.0:
            c[C_CAR_AUC28] += copies * h
    if c[C_CAR_PRESENT] > 0.5 or blin_running:
        c[C_APLASIA_DAYS] += h * _fraction_below(b_cells_start, b_cells_per_ul(y, p), B_CELL_APLASIA_PER_UL)
    ino = inotuzumab_concentration(y, p)
    if ino > c[C_INO_CMAX]:
        c[C_INO_CMAX] = ino
    blin = blinatumomab_concentration(t, p, c)
    if blin > c[C_BLIN_CSS_MAX]:
        c[C_BLIN_CSS_MAX] = blin

    for k in range(N_CLASSES):
        if c[C_ALIVE + k] < 0.5 or dy[S_LEUKEMIA + k] <= 0.0 or c[C_RESAMPLES + k] >= MAX_RESAMPLES:
            continue
        if not _inflow_small(k, y, p, c):
            continue
        p_ext = extinction_probability(c[C_CLONE_SIZE + k], y[S_EXTINCTION + k])
        if p_ext <= RESAMPLE_PROBABILITY:
            continue
        if _past_threshold(k, y, c):  # crossed without a located event: extinct, not resampled
            c[C_ALIVE + k] = 0.0
            changed = True
            continue
        c[C_RESAMPLES + k] += 1
        stream = extinction_stream + k * EXTINCTION_STREAM_STRIDE + 2 * int(c[C_RESAMPLES + k])
        size = surviving_clone_size(math.exp(y[S_LEUKEMIA + k]), p_ext, uniform(seed, patient_id, stream - 1))
        y[S_LEUKEMIA + k] = math.log(size)
        y[S_EXTINCTION + k] = -math.log(size)
        c[C_CLONE_SIZE + k] = size
        c[C_EXTINCTION_THRESHOLD + k] = extinction_threshold(size, uniform(seed, patient_id, stream))
        changed = True
    return changed


@kernel
def _error_norm(y: np.ndarray, y_new: np.ndarray, err: np.ndarray) -> float:
    """Largest error estimate relative to its tolerance: absolute on ln counts (states below N_LN_STATES),
    mixed on the linear states (drug amounts, liver injury, cumulative hazards); inf if anything is not
    finite."""
    worst = 0.0
    for j in range(N_STATES):
        scale = ATOL_LOG if j < N_LN_STATES else ATOL_LINEAR + RTOL * max(abs(y[j]), abs(y_new[j]))
        ratio = abs(err[j]) / scale
        if not math.isfinite(ratio) or not math.isfinite(y_new[j]):
            return np.inf
        if ratio > worst:
            worst = ratio
    return worst


@kernel
def _spectral_radius_estimate(k6: np.ndarray, k7: np.ndarray, stage6: np.ndarray, y_new: np.ndarray) -> float:
    """Hairer's estimate of the spectral radius (1/day) from an accepted DP5 step (Solving ODEs II, section
    IV.2): the last two stages are evaluated at the same time, so their difference quotient."""
    numerator = 0.0
    denominator = 0.0
    for j in range(N_STATES):
        numerator += (k7[j] - k6[j]) ** 2
        denominator += (y_new[j] - stage6[j]) ** 2
    return math.sqrt(numerator / denominator) if denominator > 0.0 else 0.0


@kernel
def _max_step(t: float, c: np.ndarray) -> float:
    """Largest step (day): fine while CAR-T expand or blinatumomab runs, so toxicity peaks and kinetics
    are resolved; coarse otherwise (accuracy is always set by the error control)."""
    if c[C_CAR_PRESENT] > 0.5 and t - c[C_CAR_INFUSION] < 45.0:
        return 1.0
    if c[C_BLIN_RATE] > 0.0:
        return 1.0
    return 30.0


@kernel
def integrate_interval(t: float, t_stop: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray,
                       rules: np.ndarray, seed: int, patient_id: int, extinction_stream: int,
                       record_t: np.ndarray, record_out: np.ndarray, stiff: bool, jac: np.ndarray,
                       pattern: np.ndarray, group: np.ndarray, lu: np.ndarray, pivots: np.ndarray,
                       lower: np.ndarray, n_lower: np.ndarray, upper: np.ndarray, n_upper: np.ndarray,
                       stage_f: np.ndarray, stage_implicit: np.ndarray, vectors: np.ndarray, g0: np.ndarray,
                       g1: np.ndarray, work: np.ndarray) -> tuple[float, bool]:
    """Integrate one patient from t to t_stop under the constant drive u, starting with the linearly implicit
    method if ``stiff``. Returns the time reached (< t_stop if a terminal event or a failure stopped the
    patient; see C_EVENT and C_STATUS) and whether the implicit method is in use at the end. Scratch:
    ``vectors`` (N_VECTORS x N_STATES), event values ``g0`` and ``g1`` (N_EVENTS), RHS ``work`` (RHS_WORK)."""
    k1, k2, k3, k4, k5, k6, k7 = vectors[0], vectors[1], vectors[2], vectors[3], vectors[4], vectors[5], vectors[6]
    tmp, y_new, err = vectors[7], vectors[8], vectors[9]
    # linearly implicit ARK5(4) for stability-limited stretches: allocated when first needed
    stiff_votes = 0
    calm_votes = 0
    jacobian_current = False  # the Jacobian is that of the current step's start
    compressed_jacobians = FULL_JACOBIAN_EVERY  # since the last full one (which sets pattern and column groups)
    n_groups = 0
    factored_h = 0.0  # step size of the LU factorisation; 0: factorise before the next step

    il6 = derivatives(t, y, p, u, c, k1, work)
    _event_values(y, p, c, g0)
    _record(t, y, p, c, il6, record_t, record_out)
    h = min(c[C_STEP_SIZE] if c[C_STEP_SIZE] > 0.0 else INITIAL_STEP, t_stop - t)
    attempts = 0
    while t < t_stop:
        attempts += 1
        if attempts >= MAX_STEPS:
            c[C_STATUS] = STATUS_TOO_MANY_STEPS
            return t, stiff
        boundary = t_stop
        resume = c[C_BLIN_INTERRUPTED_UNTIL]
        if t < resume < boundary:
            boundary = resume
        position = int(c[C_RECORD_POSITION])
        if position < record_t.size and t < record_t[position] < boundary:
            boundary = record_t[position]
        window_end = c[C_HSCT_TIME] + SOS_WINDOW_DAYS  # the SOS/VOD hazard drops here: a step boundary
        if c[C_HSCT_TIME] >= 0.0 and t < window_end < boundary:
            boundary = window_end
        h = min(h, _max_step(t, c), boundary - t)
        if boundary - t - h < 1e-9:
            h = boundary - t
        if stiff and not jacobian_current:
            if compressed_jacobians >= FULL_JACOBIAN_EVERY:
                stiff = jacobian(t, y, p, u, c, k1, jac, tmp, k2, work)
                for i in range(N_STATES):
                    for j in range(N_STATES):
                        pattern[i, j] = jac[i, j]
                n_groups = column_groups(jac, group)
                compressed_jacobians = 0
                if stiff and _max_step(t, c) * spectral_radius(jac, tmp, k2) < IMPLICIT_GAIN * STIFF_H_RHO:
                    stiff = False  # the cap keeps the steps short enough for DP5 to be the cheaper method
            else:
                stiff = compressed_jacobian(t, y, p, u, c, k1, pattern, group, n_groups, jac, tmp, k2, work)
                compressed_jacobians += 1
            jacobian_current = True
            factored_h = 0.0
            if not stiff:  # a non-finite Jacobian or DP5 stable: DP5 until STIFF_VOTES stability-limited steps
                stiff_votes = 0
        if stiff and h != factored_h:
            stiff = factor(jac, h * ARK_GAMMA, lu, pivots, lower, n_lower, upper, n_upper)
            factored_h = h
            if not stiff:  # a singular iteration matrix: likewise
                stiff_votes = 0
        if stiff:
            peak = max(il6, ark_step(t, h, y, p, u, c, k1, lu, pivots, lower, n_lower, upper, n_upper, stage_f,
                                     stage_implicit, k2, tmp, y_new, err, work))
            il6_new = derivatives(t + h, y_new, p, u, c, k7, work)
        else:
            for j in range(N_STATES):
                tmp[j] = y[j] + h * _A21 * k1[j]
            peak = max(il6, derivatives(t + _C2 * h, tmp, p, u, c, k2, work))
            for j in range(N_STATES):
                tmp[j] = y[j] + h * (_A31 * k1[j] + _A32 * k2[j])
            peak = max(peak, derivatives(t + _C3 * h, tmp, p, u, c, k3, work))
            for j in range(N_STATES):
                tmp[j] = y[j] + h * (_A41 * k1[j] + _A42 * k2[j] + _A43 * k3[j])
            peak = max(peak, derivatives(t + _C4 * h, tmp, p, u, c, k4, work))
            for j in range(N_STATES):
                tmp[j] = y[j] + h * (_A51 * k1[j] + _A52 * k2[j] + _A53 * k3[j] + _A54 * k4[j])
            peak = max(peak, derivatives(t + _C5 * h, tmp, p, u, c, k5, work))
            for j in range(N_STATES):
                tmp[j] = y[j] + h * (_A61 * k1[j] + _A62 * k2[j] + _A63 * k3[j] + _A64 * k4[j] + _A65 * k5[j])
            peak = max(peak, derivatives(t + h, tmp, p, u, c, k6, work))
            for j in range(N_STATES):
                y_new[j] = y[j] + h * (_B1 * k1[j] + _B3 * k3[j] + _B4 * k4[j] + _B5 * k5[j] + _B6 * k6[j])
            il6_new = derivatives(t + h, y_new, p, u, c, k7, work)
            for j in range(N_STATES):
                err[j] = h * (_E1 * k1[j] + _E3 * k3[j] + _E4 * k4[j] + _E5 * k5[j] + _E6 * k6[j] + _E7 * k7[j])
        norm = _error_norm(y, y_new, err)
        if not math.isfinite(norm):
            if h > MIN_STEP:
                h *= 0.1
                continue
            c[C_STATUS] = STATUS_NONFINITE
            return t, stiff
        if norm > 1.0:
            h *= max(0.2, 0.9 * norm ** -0.2)
            if h < MIN_STEP:
                c[C_STATUS] = STATUS_STEP_UNDERFLOW
                return t, stiff
            continue

        # locate the earliest event crossing inside the step (linear in the event function)
        _event_values(y_new, p, c, g1)
        which = -1
        theta = 2.0
        for e in range(N_EVENTS):
            if g1[e] >= 0.0 and g0[e] < 0.0 and math.isfinite(g0[e]):
                fraction = g0[e] / (g0[e] - g1[e])
                if fraction < theta:
                    theta = fraction
                    which = e
        if which >= 0 and theta < LOCATE_ACCEPT and theta * h > LOCATE_MIN_STEP:
            h = theta * h * LOCATE_OVERSHOOT  # land just past the crossing; the retry then accepts it
            continue

        jacobian_current = False
        if not stiff:
            radius = _spectral_radius_estimate(k6, k7, tmp, y_new)
            if h * radius > STIFF_H_RHO:
                stiff_votes += 1
                calm_votes = 0
                if stiff_votes >= STIFF_VOTES and _max_step(t, c) * radius >= IMPLICIT_GAIN * STIFF_H_RHO:
                    stiff = True
                    compressed_jacobians = FULL_JACOBIAN_EVERY
            else:
                calm_votes += 1
                if calm_votes >= CALM_VOTES:
                    stiff_votes = 0
        b_cells_start = b_cells_per_ul(y, p) if c[C_CAR_PRESENT] > 0.5 or c[C_BLIN_RATE] > 0.0 else 0.0
        t += h
        for j in range(N_STATES):
            y[j] = y_new[j]
            k1[j] = k7[j]
        for e in range(N_EVENTS):
            g0[e] = g1[e]
        il6 = il6_new
        c[C_STEPS] += 1
        changed = False
        if which >= 0:
            if _apply_event(which, t, y, c, p):
                return t, stiff
            changed = True
        # toxicity is graded on the step's IL-6 peak: the largest value at its Runge-Kutta stages
        if _monitor(t, h, y, p, u, c, max(peak, il6_new), rules, seed, patient_id, extinction_stream, k1,
                    b_cells_start):
            changed = True
        if c[C_EVENT] != EVENT_NONE or c[C_STATUS] != STATUS_OK:
            return t, stiff
        if abs(t - resume) < 1e-12 and c[C_BLIN_RATE] == 0.0 and resume > 0.0:
            _reanchor_blinatumomab(t, p, c, u[U_BLIN_RATE])
            c[C_BLIN_INTERRUPTED_UNTIL] = -1.0
            changed = True
        if changed:  # state or context changed at t: derivatives, event functions and Jacobian start afresh
            il6 = derivatives(t, y, p, u, c, k1, work)
            _event_values(y, p, c, g0)
            compressed_jacobians = FULL_JACOBIAN_EVERY  # the sparsity may have changed too
        _record(t, y, p, c, il6, record_t, record_out)
        c[C_STEP_SIZE] = h
        h *= min(5.0, 0.9 * max(norm, 1e-10) ** -0.2)
        for j in range(N_STATES):
            if not math.isfinite(y[j]):
                c[C_STATUS] = STATUS_NONFINITE
                return t, stiff
    return t, stiff


@numba.njit(cache=True, error_model="numpy")
def integrate_patient(y: np.ndarray, p: np.ndarray, c: np.ndarray, times: np.ndarray, drive: np.ndarray,
                      bolus: np.ndarray, n_breakpoints: int, t_end: float, rules: np.ndarray, seed: int,
                      patient_id: int, extinction_stream: int, record_t: np.ndarray,
                      record_out: np.ndarray) -> None:
    """Integrate one patient through its breakpoints (boluses applied at each) up to t_end."""
    stiff = False
    jac = np.empty((N_STATES, N_STATES))
    pattern = np.empty((N_STATES, N_STATES))
    group = np.empty(N_STATES, dtype=np.int64)
    lu = np.empty((N_STATES, N_STATES))
    pivots = np.empty(N_STATES, dtype=np.int64)
    lower = np.empty((N_STATES, N_STATES), dtype=np.int64)
    n_lower = np.empty(N_STATES, dtype=np.int64)
    upper = np.empty((N_STATES, N_STATES), dtype=np.int64)
    n_upper = np.empty(N_STATES, dtype=np.int64)
    stage_f = np.empty((ARK_STAGES, N_STATES))
    stage_implicit = np.empty((ARK_STAGES, N_STATES))
    vectors = np.empty((N_VECTORS, N_STATES))
    g0 = np.empty(N_EVENTS)
    g1 = np.empty(N_EVENTS)
    work = np.empty(RHS_WORK)
    for j in range(n_breakpoints):
        t = times[j]
        t_next = times[j + 1] if j + 1 < n_breakpoints else t_end
        _apply_bolus(t, y, p, c, bolus[j])
        _extinguish_crossed(y, p, c)
        rate = drive[j, U_BLIN_RATE] if c[C_BLIN_INTERRUPTED_UNTIL] <= t else 0.0
        _reanchor_blinatumomab(t, p, c, rate)
        if t_next <= t:
            continue
        reached, stiff = integrate_interval(t, t_next, y, p, drive[j], c, rules, seed, patient_id,
                                            extinction_stream, record_t, record_out, stiff, jac, pattern,
                                            group, lu, pivots, lower, n_lower, upper, n_upper, stage_f,
                                            stage_implicit, vectors, g0, g1, work)
        if c[C_EVENT] != EVENT_NONE or c[C_STATUS] != STATUS_OK or reached < t_next:
            return


@numba.njit(cache=True, parallel=True, error_model="numpy")
def integrate_batch(y: np.ndarray, p: np.ndarray, c: np.ndarray, times: np.ndarray, drive: np.ndarray,
                    bolus: np.ndarray, n_breakpoints: np.ndarray, t_end: np.ndarray, rules: np.ndarray,
                    seed: int, patient_ids: np.ndarray, extinction_stream: int, record_t: np.ndarray,
                    record_out: np.ndarray) -> None:
    """Integrate every patient of a batch (rows) in parallel; state and context are updated in place.
    Trajectory records (``record_out[i]``, N_RECORD columns) are filled at the times ``record_t``
    (absolute days; an empty array records nothing)."""
    for i in numba.prange(y.shape[0]):
        integrate_patient(y[i], p[i], c[i], times[i], drive[i], bolus[i], n_breakpoints[i], t_end[i], rules,
                          seed, patient_ids[i], extinction_stream, record_t, record_out[i])
