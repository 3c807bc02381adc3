"""Array layouts shared by the model and the engine: state vector, per-patient derived quantities,
the piecewise-constant drive of a schedule segment, and the per-patient context the engine mutates.

Cell populations are integrated as natural logarithms of whole-body counts (positivity, 12 orders of
magnitude, and fast kills that are not stiff on the log scale)."""

from __future__ import annotations

from .registry import PARAMETERS

N_CLASSES = 4

# --- state vector -------------------------------------------------------------------------------
S_LEUKEMIA = 0  # ln cells, classes 0..3
S_EXTINCTION = 4  # ln K_k of the Kendall layer, classes 0..3 (engine/extinction.py)
S_B_PRECURSOR = 8  # ln cells
S_B_MATURE = 9  # ln cells
S_MARROW = 10  # ln normal haematopoietic cells
S_T_RESTING = 11  # ln cells
S_T_ACTIVE = 12  # ln cells
S_CAR_EFFECTOR = 13  # ln cells
S_CAR_MEMORY = 14  # ln cells
S_CAR_EXHAUSTED = 15  # ln cells
S_INO_CENTRAL = 16  # mg
S_INO_PERIPHERAL = 17  # mg
S_LIVER_INJURY = 18  # ng/mL-equivalent (accrued concentration, decaying)
S_HAZARD_INFECTION = 19  # cumulative hazard
S_HAZARD_TRM = 20  # cumulative hazard
S_HAZARD_SOS = 21  # cumulative hazard
N_STATES = 22
N_LN_STATES = S_INO_CENTRAL  # states 0 .. 15 are ln counts (leukemic classes, Kendall K, lymphocytes); then linear
STATE_NAMES = (
    "ln_leukemia_cd19pos_cd22pos", "ln_leukemia_cd19neg", "ln_leukemia_cd22low", "ln_leukemia_lineage_switch",
    "ln_extinction_k_0", "ln_extinction_k_1", "ln_extinction_k_2", "ln_extinction_k_3",
    "ln_b_precursor", "ln_b_mature", "ln_normal_marrow", "ln_t_resting", "ln_t_active",
    "ln_car_effector", "ln_car_memory", "ln_car_exhausted", "ino_central_mg", "ino_peripheral_mg",
    "liver_injury", "hazard_infection", "hazard_trm", "hazard_sos",
)

# --- per-patient vector: registry parameters (individualised) followed by derived quantities ------
N_REGISTRY = len(PARAMETERS)
DERIVED_NAMES = (
    "weight_kg", "age_years", "bsa_m2", "marrow_capacity", "b_source", "b_precursor_normal",
    "b_mature_normal", "t_normal", "lymphocyte_space", "marrow_normal", "blin_elimination", "blin_volume",
    "ino_clearance_ss", "ino_clearance_time", "ino_decay", "ino_central_volume", "chemosensitivity",
    "t_cell_fitness", "crs_susceptibility", "icans_susceptibility", "prior_hsct", "wbc_per_uL",
    "t_cell_kill_sensitivity", "marrow_reserve", "chemosensitivity_other", "car_exhaustion_factor",
)
D = {name: N_REGISTRY + i for i, name in enumerate(DERIVED_NAMES)}
N_PATIENT = N_REGISTRY + len(DERIVED_NAMES)

# --- drive: constant between schedule breakpoints -----------------------------------------------
U_BLIN_RATE = 0  # ug/day
U_LEUKEMIA_KILL = 1  # 1/day, induction-class regimens (before chemosensitivity; model/chemotherapy.py)
U_T_KILL = 2
U_B_KILL = 3
U_MARROW_KILL = 4
U_INFECTION = 5  # 1/day death hazard
U_LEUKEMIA_KILL_OTHER = 6  # 1/day, the other regimens and agents (before their chemosensitivity)
N_DRIVE = 7

# --- boluses applied at a breakpoint ---------------------------------------------------------------
B_INO_MG = 0
B_CAR_CELLS = 1
B_HSCT = 2  # 1.0 = allogeneic transplant (conditioning + graft) at this time
N_BOLUS = 3

# --- context: per-patient quantities the engine reads and updates ----------------------------------
C_BLIN_AMOUNT = 0  # ug at C_BLIN_TIME
C_BLIN_TIME = 1
C_INO_FIRST = 2  # time of first inotuzumab dose (-1: none)
C_HSCT_TIME = 3  # time of last transplant (-1: none)
C_CAR_PRESENT = 4
C_ALIVE = 5  # 4 flags: class k not extinct
C_EXTINCTION_THRESHOLD = 9  # 4 values: ln K at which class k goes extinct
C_CLONE_SIZE = 13  # 4 values: initial cell count n0 of the current clone (Kendall layer)
C_RESAMPLES = 17  # 4 counters: stochastic resamplings of class k (stream offsets)
C_REMISSION = 21  # 1 while in CR/CRi (relapse monitored)
C_TOCILIZUMAB_TIME = 22  # time of last tocilizumab dose (-1)
C_STEROID_TIME = 23
C_BLIN_INTERRUPTED_UNTIL = 24
C_CRS_MAX = 25
C_ICANS_MAX = 26
C_CRS_ONSET = 27  # -1 until grade >= 1
C_CAR_CMAX = 28  # copies/ug
C_CAR_TMAX = 29  # day (absolute)
C_CAR_AUC28 = 30  # copies/ug x day over 28 days after infusion
C_CAR_INFUSION = 31  # day of infusion (-1)
C_APLASIA_DAYS = 32  # days with B cells <= 10/uL after infusion / blinatumomab
C_SOS_TIME = 33  # -1 until SOS/VOD
C_EVENT = 34  # terminal event code (EVENT_*)
C_EVENT_TIME = 35
C_RELAPSE_CLASS = 36
C_INFECTION_THRESHOLD = 37  # Exp(1) draws for the competing death hazards
C_TRM_THRESHOLD = 38
C_SOS_THRESHOLD = 39
C_SOS_FATAL_U = 40
C_TOCILIZUMAB_DOSES = 41
C_STEROID_DOSES = 42
C_INTERRUPTIONS = 43
C_INO_CMAX = 44  # ng/mL
C_BLIN_CSS_MAX = 45  # ng/mL
C_IL6_MAX = 46  # pg/mL
C_STATUS = 47  # STATUS_* code of the integration
C_BLIN_RATE = 48  # ug/day infused since C_BLIN_TIME
C_STEPS = 49  # accepted integration steps (diagnostics)
C_RECORD_POSITION = 50  # next trajectory record to fill
C_STEP_SIZE = 51  # last step size (day), the first trial step of the next interval
MAX_LOGGED_INTERRUPTIONS = 24
C_INTERRUPTION_LOG = 52  # (start, planned end) day of each blinatumomab interruption, the first 24
N_CONTEXT = C_INTERRUPTION_LOG + 2 * MAX_LOGGED_INTERRUPTIONS

EVENT_NONE = 0
EVENT_RELAPSE = 1
EVENT_DEATH_INFECTION = 2
EVENT_DEATH_TRM = 3
EVENT_DEATH_SOS = 4
EVENT_DEATH_CRS = 5
EVENT_NAMES = ("none", "relapse", "death_infection", "death_transplant", "death_sos", "death_crs")

STATUS_OK = 0
STATUS_STEP_UNDERFLOW = 1
STATUS_TOO_MANY_STEPS = 2
STATUS_NONFINITE = 3
STATUS_NAMES = ("ok", "step_size_underflow", "too_many_steps", "non_finite_state")
