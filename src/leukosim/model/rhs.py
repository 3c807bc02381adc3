"""The model's right-hand side and its observables, composed from the mechanisms.

``derivatives`` is the one place where the mechanisms meet; each term cites the mechanism module
that owns its parameters. Time is in days, cells are whole-body counts (ln scale), drug amounts in
ug (blinatumomab, analytic) or mg (inotuzumab).

Speed: the sixteen ln-scale states are exponentiated together in SIMD lanes (``lanes.exp_lanes``), and the
ratios of two pools are divisions of those counts (from the difference of ln counts only where a count has
underflowed)."""

from __future__ import annotations

import math

import numpy as np

from ..kernel import kernel
from .blinatumomab import blinatumomab_amount
from .disease import CD19_POSITIVE, CD22_POSITIVE, leukemia_birth_rate
from .inotuzumab import emax
from .lanes import LANE_SCRATCH, exp_lanes
from .layout import (
    C_ALIVE, C_BLIN_AMOUNT, C_BLIN_RATE, C_BLIN_TIME, C_CAR_PRESENT, C_HSCT_TIME, C_INO_FIRST,
    D, N_CLASSES, N_LN_STATES, S_B_MATURE, S_B_PRECURSOR, S_CAR_EFFECTOR,
    S_CAR_EXHAUSTED, S_CAR_MEMORY, S_EXTINCTION, S_HAZARD_INFECTION, S_HAZARD_SOS, S_HAZARD_TRM,
    S_INO_CENTRAL, S_INO_PERIPHERAL, S_LEUKEMIA, S_LIVER_INJURY, S_MARROW, S_T_ACTIVE, S_T_RESTING,
    U_B_KILL, U_INFECTION, U_LEUKEMIA_KILL, U_LEUKEMIA_KILL_OTHER, U_MARROW_KILL, U_T_KILL,
)
from .registry import INDEX
from .t_cells import hill

# registry indices are module constants so numba folds them
_NET_GROWTH = INDEX["leukemia_net_growth"]
_DEATH = INDEX["leukemia_death_rate"]
_SW19 = INDEX["switch_cd19_loss"]
_SW22 = INDEX["switch_cd22_low"]
_SWLS = INDEX["switch_lineage"]
_MARROW_REGROWTH = INDEX["normal_marrow_regrowth"]
_MARROW_FAILURE = INDEX["marrow_failure_death_hazard"]
_B_MAT = INDEX["b_maturation_rate"]
_B_APOP = INDEX["b_precursor_apoptosis"]
_B_DEATH = INDEX["b_mature_death"]
_T_HOMEO = INDEX["t_homeostatic_rate"]
_T_MARROW = INDEX["t_marrow_fraction"]
_ACT_RATE = INDEX["blin_t_activation_rate"]
_VM_T = INDEX["blin_vm_t"]
_KM_BT = INDEX["blin_km_bt"]
_HILL_BT = INDEX["blin_hill_bt"]
_EC50_ACT = INDEX["blin_ec50_activation"]
_DEACT = INDEX["t_deactivation_rate"]
_TA_APOP = INDEX["t_activated_apoptosis"]
_TA_PROLIF = INDEX["t_activated_proliferation"]
_KILL_RATE = INDEX["blin_kill_rate"]
_BLOOD_KILL = INDEX["blin_blood_kill_max"]
_MARROW_EFF = INDEX["blin_marrow_kill_efficiency"]
_VM_B = INDEX["blin_vm_b"]
_KM_TB = INDEX["blin_km_tb"]
_HILL_TB = INDEX["blin_hill_tb"]
_EC50_KILL = INDEX["blin_ec50_kill"]
_CAR_RHO = INDEX["car_expansion_rate"]
_CAR_ALPHA = INDEX["car_contraction_rate"]
_CAR_EM = INDEX["car_memory_formation"]
_CAR_BETA = INDEX["car_memory_decay"]
_CAR_ME = INDEX["car_memory_reactivation"]
_CAR_EX = INDEX["car_exhaustion_rate"]
_CAR_XDEATH = INDEX["car_exhausted_death"]
_CAR_EC50 = INDEX["car_antigen_ec50"]
_CAR_KILL = INDEX["car_kill_max"]
_CAR_KC = INDEX["car_kill_half_saturation"]
_CAR_REJECT = INDEX["car_rejection_rate"]
_INO_Q = INDEX["ino_intercompartmental_clearance"]
_INO_VP = INDEX["ino_peripheral_volume"]
_INO_KILL = INDEX["ino_kill_max"]
_INO_EC50 = INDEX["ino_ec50"]
_INO_LOW = INDEX["ino_ec50_cd22_low_factor"]
_LIVER_IN = INDEX["liver_injury_rate"]
_LIVER_OUT = INDEX["liver_repair_rate"]
_GVL = INDEX["gvl_kill_max"]
_GVL_ONSET = INDEX["gvl_onset_days"]
_TRM = INDEX["trm_hazard"]
_TRM_DECAY = INDEX["trm_decay_days"]
_TRM_SECOND = INDEX["trm_second_transplant_factor"]
_IL6_BASE = INDEX["il6_baseline"]
_IL6_KILL = INDEX["il6_per_kill"]
_IL6_ACT = INDEX["il6_per_activation"]
_SOS_INJURY = INDEX["sos_hazard_per_injury"]
_SOS_TX = INDEX["sos_transplant_factor"]
_SOS_TX_BASE = INDEX["sos_transplant_baseline"]

_WEIGHT = D["weight_kg"]
_CAPACITY = D["marrow_capacity"]
_B_SOURCE = D["b_source"]
_T_NORMAL = D["t_normal"]
_SPACE = D["lymphocyte_space"]
_MARROW_NORMAL = D["marrow_normal"]
_BLIN_K = D["blin_elimination"]
_BLIN_V = D["blin_volume"]
_INO_CLSS = D["ino_clearance_ss"]
_INO_CLT = D["ino_clearance_time"]
_INO_KDES = D["ino_decay"]
_INO_VC = D["ino_central_volume"]
_CHEMOSENS = D["chemosensitivity"]
_CHEMOSENS_OTHER = D["chemosensitivity_other"]
_FITNESS = D["t_cell_fitness"]
_T_KILL_SENS = D["t_cell_kill_sensitivity"]
_CAR_EX_FACTOR = D["car_exhaustion_factor"]
_PRIOR_HSCT = D["prior_hsct"]
_MARROW_RESERVE = D["marrow_reserve"]

SOS_WINDOW_DAYS = 21.0  # modified Seattle / Baltimore windows after HSCT (calibration_targets C5)
#: length of the ``work`` scratch array of ``derivatives`` (float64)
RHS_WORK = LANE_SCRATCH * N_LN_STATES
_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)


@kernel
def blinatumomab_concentration(t: float, p: np.ndarray, c: np.ndarray) -> float:
    """Blinatumomab plasma concentration (ng/mL = ug/L) at time t, from the last rate change."""
    if c[C_BLIN_AMOUNT] <= 0.0 and c[C_BLIN_RATE] <= 0.0:
        return 0.0  # none given (or all eliminated at the last rate change)
    amount = blinatumomab_amount(c[C_BLIN_AMOUNT], c[C_BLIN_RATE], p[_BLIN_K], t - c[C_BLIN_TIME])
    return amount / p[_BLIN_V]


@kernel
def inotuzumab_concentration(y: np.ndarray, p: np.ndarray) -> float:
    """Inotuzumab plasma concentration (ng/mL)."""
    return 1000.0 * y[S_INO_CENTRAL] / p[_INO_VC]


@kernel(inline="always")
def _cells(counts: np.ndarray, c: np.ndarray, k: int) -> float:
    """Cells of leukemic class k from the exponentiated state ``counts`` (0 once extinct)."""
    return counts[S_LEUKEMIA + k] if c[C_ALIVE + k] > 0.5 else 0.0


@kernel(inline="always")
def _ratio(numerator: float, denominator: float, ln_ratio: float) -> float:
    """numerator / denominator of two positive counts; from their ln ratio where the denominator is 0 or
    subnormal (never 0/0, never a ratio of rounded-off subnormals)."""
    return numerator / denominator if denominator >= _SMALLEST_NORMAL else math.exp(ln_ratio)


@kernel
def derivatives(t: float, y: np.ndarray, p: np.ndarray, u: np.ndarray, c: np.ndarray,
                dy: np.ndarray, work: np.ndarray) -> float:
    """Fill ``dy`` (d state / d day); return serum IL-6 (pg/mL, quasi-steady state). ``work`` is scratch of
    RHS_WORK float64."""
    weight = p[_WEIGHT]
    capacity = p[_CAPACITY]

    exp_lanes(y, work, N_LN_STATES)  # work[j] = e^y[j]: cells (leukemic classes, lymphocytes) or Kendall K_k
    leukemia = (_cells(work, c, 0), _cells(work, c, 1), _cells(work, c, 2), _cells(work, c, 3))
    total_leukemia = leukemia[0] + leukemia[1] + leukemia[2] + leukemia[3]
    cd19_leukemia = 0.0
    for k in range(N_CLASSES):
        cd19_leukemia += CD19_POSITIVE[k] * leukemia[k]
    b_pre = work[S_B_PRECURSOR]
    b_mat = work[S_B_MATURE]
    marrow = work[S_MARROW]
    t_rest = work[S_T_RESTING]
    t_act = work[S_T_ACTIVE]
    car_present = c[C_CAR_PRESENT] > 0.5
    car_e = work[S_CAR_EFFECTOR] if car_present else 0.0
    car_m = work[S_CAR_MEMORY] if car_present else 0.0
    car_x = work[S_CAR_EXHAUSTED] if car_present else 0.0
    car_total = car_e + car_m + car_x
    lymphocytes = t_rest + t_act + car_total

    # drug exposure
    blin = blinatumomab_concentration(t, p, c)
    ino = inotuzumab_concentration(y, p)
    fitness = p[_FITNESS]

    # blinatumomab pharmacodynamics (t_cells.py): activation by target:T ratio, kill by T:target ratio
    cd19_targets = cd19_leukemia + b_pre + b_mat
    activation = 0.0
    blin_marrow_kill = 0.0
    blin_blood_kill = 0.0
    if blin > 0.0:
        drug_act = blin / (blin + p[_EC50_ACT])
        activation = p[_ACT_RATE] * p[_VM_T] * hill(cd19_targets / t_rest, p[_KM_BT], p[_HILL_BT]) * drug_act
        drug_kill = blin / (blin + p[_EC50_KILL])
        marrow_targets = cd19_leukemia + b_pre
        if marrow_targets > 0.0:
            ratio = p[_T_MARROW] * t_act / marrow_targets
            blin_marrow_kill = (p[_KILL_RATE] * p[_MARROW_EFF] * p[_VM_B] * fitness
                                * hill(ratio, p[_KM_TB], p[_HILL_TB]) * drug_kill)
        blin_blood_kill = (p[_BLOOD_KILL] * fitness
                           * hill(t_act / b_mat, p[_KM_TB] * p[_MARROW_EFF], p[_HILL_TB]) * drug_kill)

    # CAR-T kill of CD19+ cells (car_t.py)
    car_kill = p[_CAR_KILL] * car_e / (p[_CAR_KC] + car_e) if car_present else 0.0

    # transplant: graft-versus-leukemia (transplant.py)
    gvl = 0.0
    since_hsct = -1.0
    if c[C_HSCT_TIME] >= 0.0:
        since_hsct = t - c[C_HSCT_TIME]
        gvl = p[_GVL] * (1.0 - math.exp(-since_hsct / p[_GVL_ONSET]))

    # leukemia (disease.py) and its extinction layer (engine/extinction.py)
    birth = leukemia_birth_rate(p[_NET_GROWTH], p[_DEATH], total_leukemia / capacity)
    chemo = u[U_LEUKEMIA_KILL] * p[_CHEMOSENS] + u[U_LEUKEMIA_KILL_OTHER] * p[_CHEMOSENS_OTHER]
    ino_effect = p[_INO_KILL] * emax(ino, p[_INO_EC50])
    ino_effect_low = p[_INO_KILL] * emax(ino, p[_INO_EC50] * p[_INO_LOW])
    switch = (0.0, p[_SW19], p[_SW22], p[_SWLS])
    switch_total = p[_SW19] + p[_SW22] + p[_SWLS]
    car_kill_flux = 0.0  # CAR-T kills (cells/day): target pyroptosis drives IL-6 (toxicity.py)
    for k in range(N_CLASSES):
        sensitivity = CD19_POSITIVE[k] * p[_T_KILL_SENS]  # to T-cell killing (normal B cells: 1)
        immune = sensitivity * (car_kill + blin_marrow_kill)
        ino_k = ino_effect if CD22_POSITIVE[k] > 0.5 else (ino_effect_low if k == 2 else 0.0)
        death = p[_DEATH] + chemo + immune + ino_k + gvl
        rate = birth - death
        if k == 0:
            rate -= switch_total
        elif c[C_ALIVE] > 0.5:
            rate += switch[k] * _ratio(leukemia[0], leukemia[k], y[S_LEUKEMIA] - y[S_LEUKEMIA + k])
        if c[C_ALIVE + k] > 0.5:
            dy[S_LEUKEMIA + k] = rate
            # Kendall layer: d ln K / dt = death / (cells x K)
            dy[S_EXTINCTION + k] = death * _ratio(1.0, leukemia[k] * work[S_EXTINCTION + k],
                                                  -y[S_LEUKEMIA + k] - y[S_EXTINCTION + k])
            car_kill_flux += sensitivity * car_kill * leukemia[k]
        else:
            dy[S_LEUKEMIA + k] = 0.0
            dy[S_EXTINCTION + k] = 0.0

    # normal haematopoiesis and B lineage (disease.py, b_lineage.py)
    free_marrow = 1.0 - (total_leukemia + marrow + b_pre) / capacity
    dy[S_MARROW] = p[_MARROW_REGROWTH] * p[_MARROW_RESERVE] * free_marrow - u[U_MARROW_KILL]
    b_source = p[_B_SOURCE] * min(1.0, marrow / p[_MARROW_NORMAL]) * max(0.0, 1.0 - total_leukemia / capacity)
    b_immune_marrow = car_kill + blin_marrow_kill
    b_immune_blood = car_kill + blin_blood_kill
    dy[S_B_PRECURSOR] = (b_source * _ratio(1.0, b_pre, -y[S_B_PRECURSOR]) - p[_B_MAT] - p[_B_APOP] - u[U_B_KILL]
                         - b_immune_marrow - ino_effect)
    dy[S_B_MATURE] = (p[_B_MAT] * _ratio(b_pre, b_mat, y[S_B_PRECURSOR] - y[S_B_MATURE]) - p[_B_DEATH]
                      - u[U_B_KILL] - b_immune_blood - ino_effect)
    car_kill_flux += car_kill * (b_pre + b_mat)

    # endogenous T cells (t_cells.py)
    homeostasis = p[_T_HOMEO] * (1.0 - lymphocytes / p[_T_NORMAL])
    dy[S_T_RESTING] = (homeostasis - activation + p[_DEACT] * _ratio(t_act, t_rest, y[S_T_ACTIVE] - y[S_T_RESTING])
                       - u[U_T_KILL])
    space = max(0.0, 1.0 - lymphocytes / p[_SPACE])
    proliferation = p[_TA_PROLIF] * fitness * space * (blin / (blin + p[_EC50_ACT]) if blin > 0.0 else 0.0)
    dy[S_T_ACTIVE] = (activation * _ratio(t_rest, t_act, y[S_T_RESTING] - y[S_T_ACTIVE]) - p[_DEACT] - p[_TA_APOP]
                      + proliferation - u[U_T_KILL])

    # CAR-T (car_t.py): antigen = CD19+ leukemia and normal B cells; expansion scales with the fitness of the
    # patient's T cells the product is made from; host T cells reject CAR-T cells as they reconstitute
    car_activation = 0.0  # antigen-driven CAR-T proliferation (cells/day): activated T cells release IL-6
    if car_present:
        signal = cd19_targets / (cd19_targets + p[_CAR_EC50])
        expansion = p[_CAR_RHO] * fitness * signal * space
        car_activation = expansion * car_e
        ln_effector, ln_memory = y[S_CAR_EFFECTOR], y[S_CAR_MEMORY]
        loss = u[U_T_KILL] + p[_CAR_REJECT] * t_rest / p[_T_NORMAL]
        exhaustion = p[_CAR_EX] * p[_CAR_EX_FACTOR] * signal
        dy[S_CAR_EFFECTOR] = (expansion - p[_CAR_ALPHA] * (1.0 - signal) - p[_CAR_EM] - exhaustion
                              + p[_CAR_ME] * signal * _ratio(car_m, car_e, ln_memory - ln_effector) - loss)
        dy[S_CAR_MEMORY] = (p[_CAR_EM] * _ratio(car_e, car_m, ln_effector - ln_memory) - p[_CAR_BETA]
                            - p[_CAR_ME] * signal - loss)
        dy[S_CAR_EXHAUSTED] = (exhaustion * _ratio(car_e, car_x, ln_effector - y[S_CAR_EXHAUSTED])
                               - p[_CAR_XDEATH] - loss)
    else:
        dy[S_CAR_EFFECTOR] = 0.0
        dy[S_CAR_MEMORY] = 0.0
        dy[S_CAR_EXHAUSTED] = 0.0

    # inotuzumab two-compartment PK with time-dependent clearance (inotuzumab.py)
    clearance = p[_INO_CLSS]
    if c[C_INO_FIRST] >= 0.0:
        clearance += p[_INO_CLT] * math.exp(-p[_INO_KDES] * (t - c[C_INO_FIRST]))
    central = y[S_INO_CENTRAL]
    peripheral = y[S_INO_PERIPHERAL]
    dy[S_INO_CENTRAL] = -(clearance + p[_INO_Q]) / p[_INO_VC] * central + p[_INO_Q] / p[_INO_VP] * peripheral
    dy[S_INO_PERIPHERAL] = p[_INO_Q] / p[_INO_VC] * central - p[_INO_Q] / p[_INO_VP] * peripheral
    dy[S_LIVER_INJURY] = p[_LIVER_IN] * ino - p[_LIVER_OUT] * y[S_LIVER_INJURY]

    # death and SOS hazards (chemotherapy.py, disease.py: marrow failure, transplant.py, toxicity.py)
    dy[S_HAZARD_INFECTION] = u[U_INFECTION] + p[_MARROW_FAILURE] * total_leukemia / capacity
    trm = 0.0
    sos = p[_SOS_INJURY] * y[S_LIVER_INJURY]
    if since_hsct >= 0.0:
        trm = p[_TRM] * math.exp(-since_hsct / p[_TRM_DECAY])
        if p[_PRIOR_HSCT] > 0.5:
            trm *= p[_TRM_SECOND]
        if since_hsct < SOS_WINDOW_DAYS:
            sos = sos * p[_SOS_TX] + p[_SOS_TX_BASE]
    dy[S_HAZARD_TRM] = trm
    dy[S_HAZARD_SOS] = sos

    return p[_IL6_BASE] + (p[_IL6_KILL] * car_kill_flux + p[_IL6_ACT] * (activation * t_rest + car_activation)) / weight
