"""Clinical grading of simulated signs: ASTCT 2019 consensus CRS and ICANS grades, and marrow response.

Grades follow Lee DW et al., "ASTCT consensus grading for cytokine release syndrome and neurologic toxicity
associated with immune effector cells", Biol Blood Marrow Transplant 2019;25:625-638, as transcribed in
calibration_targets.md Part C (C1, C2) and ecosystem.md §3.1-3.2; response categories follow the CR/CRi
definitions of ecosystem.md §3.5 and calibration_targets.md C6.

Each scalar function is compiled with numba (``cache=True``) and takes and returns plain ints, floats and
bools, so the engine calls it inside compiled code; Python callers may use it directly on scalars or use the
array versions (``crs_grades_astct``, ``icans_grades_astct``, ``response_categories``), which broadcast their
arguments like NumPy ufuncs. Inputs outside a sign's documented levels raise ``ValueError``.

Grade 5 (death from CRS or ICANS) is never assigned here: death is an event of the engine.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..kernel import kernel

__all__ = [
    "ICE_MIN_AGE_YEARS",
    "ICE_NORMAL",
    "CAPD_MAX",
    "CAPD_DELIRIUM",
    "UNABLE_TO_PERFORM",
    "RESPONSE_NR",
    "RESPONSE_CRI",
    "RESPONSE_CR",
    "RESPONSE_LABELS",
    "crs_grade_astct",
    "icans_grade_astct",
    "response_category",
    "crs_grades_astct",
    "icans_grades_astct",
    "response_categories",
]

#: Age (years) from which ICANS encephalopathy is scored by ICE; younger children are scored by CAPD.
#: Lee 2019's pediatric ICANS table reads "ICE score for children age >= 12 years" and "CAPD score for
#: children age < 12 years"; some transcriptions write ">12 y" / "<=12 y" (NCIt C188936) [not re-verified].
ICE_MIN_AGE_YEARS = 12.0
#: ICE score of an unimpaired patient (orientation 4, naming 3, commands 1, writing 1, attention 1 points).
ICE_NORMAL = 10
#: Highest CAPD score (8 items scored 0-4; higher is worse).
CAPD_MAX = 32
#: CAPD score from which delirium is called and ICANS is grade 3 (Traube et al., Crit Care Med 2014;42:656).
CAPD_DELIRIUM = 9
#: Encephalopathy score meaning "unable to perform ICE/CAPD" (unarousable): ICANS grade 4.
UNABLE_TO_PERFORM = -1

RESPONSE_NR = 0
RESPONSE_CRI = 1
RESPONSE_CR = 2
#: Labels of the response codes, indexed by code.
RESPONSE_LABELS = ("NR", "CRi", "CR")


# ------------------------------------------------------------------------------------------------- CRS
@kernel
def crs_grade_astct(fever: bool, hypotension: int, hypoxia: int, anticytokine_given: bool) -> int:
    """ASTCT 2019 CRS grade (0 = no CRS, 1-4) from the clinical signs at one time.

    Args:
        fever: temperature >= 38 °C not attributable to another cause.
        hypotension: 0 none; 1 not requiring vasopressors; 2 requiring one vasopressor with or without
            vasopressin; 3 requiring multiple vasopressors (excluding vasopressin).
        hypoxia: 0 none; 1 low-flow nasal cannula (<= 6 L/min) or blow-by; 2 high-flow nasal cannula
            (> 6 L/min), facemask, non-rebreather or Venturi mask; 3 positive pressure (CPAP, BiPAP,
            intubation and mechanical ventilation).
        anticytokine_given: antipyretic or anti-cytokine therapy (tocilizumab, corticosteroids) has been
            given, after which fever is no longer required and the grade follows hypotension and hypoxia.

    Returns:
        Fever is required (unless ``anticytokine_given``); the grade is then set by the more severe of
        hypotension and hypoxia (level n -> grade n + 1), and fever alone is grade 1. Example: fever, one
        vasopressor and low-flow oxygen is grade 3. Without fever and without prior therapy the grade is 0.
    """
    if hypotension < 0 or hypotension > 3:
        raise ValueError("hypotension must be 0 (none) to 3 (multiple vasopressors)")
    if hypoxia < 0 or hypoxia > 3:
        raise ValueError("hypoxia must be 0 (none) to 3 (positive pressure)")
    if not fever and not anticytokine_given:
        return 0
    level = max(hypotension, hypoxia)
    if level > 0:
        return level + 1
    return 1 if fever else 0


# ----------------------------------------------------------------------------------------------- ICANS
@kernel
def _ice_grade(score: int) -> int:
    """ICANS grade of the ICE domain (ages >= 12 y): 10 none, 7-9 G1, 3-6 G2, 0-2 G3, unable G4."""
    if score == UNABLE_TO_PERFORM:
        return 4
    if score < 0 or score > ICE_NORMAL:
        raise ValueError("an ICE score must be 0-10, or -1 when the patient cannot perform it")
    if score <= 2:
        return 3
    if score <= 6:
        return 2
    if score <= 9:
        return 1
    return 0


@kernel
def _capd_grade(score: int) -> int:
    """ICANS grade of the CAPD domain (ages < 12 y): 0 none, 1-8 G1 (G2 comes from consciousness),
    >= 9 G3, unable G4."""
    if score == UNABLE_TO_PERFORM:
        return 4
    if score < 0 or score > CAPD_MAX:
        raise ValueError("a CAPD score must be 0-32, or -1 when it cannot be performed")
    if score >= CAPD_DELIRIUM:
        return 3
    if score >= 1:
        return 1
    return 0


@kernel
def icans_grade_astct(age_years: float, encephalopathy_score: int, consciousness: int, seizure: int,
                      motor_weakness: bool, cerebral_edema: int) -> int:
    """ASTCT 2019 ICANS grade (0 = no ICANS, 1-4): the most severe of its five domains.

    Args:
        age_years: age; from ``ICE_MIN_AGE_YEARS`` (12 y) the encephalopathy score is ICE, below it CAPD.
        encephalopathy_score: ICE score 0-10 (10 normal; 7-9 G1, 3-6 G2, 0-2 G3) or CAPD score 0-32
            (higher worse; 0 none, 1-8 G1, >= 9 G3); ``UNABLE_TO_PERFORM`` (-1) when the patient is
            unarousable and cannot perform it (G4). ICE 0 in an awake patient (e.g. global aphasia) is G3.
        consciousness: 0 normal; 1 awakens spontaneously (G1); 2 awakens to voice (G2); 3 awakens only to
            tactile stimulus (G3); 4 unarousable or needs vigorous/repetitive tactile stimuli, stupor or
            coma (G4). For children scored by CAPD, CAPD 1-8 is G1 or G2 according to this domain.
        seizure: 0 none; 1 any clinical seizure, focal or generalised, resolving rapidly, or non-convulsive
            EEG seizures resolving with intervention (G3); 2 life-threatening prolonged seizure (> 5 min) or
            repetitive clinical or electrical seizures without return to baseline in between (G4).
        motor_weakness: deep focal motor weakness such as hemiparesis or paraparesis (G4).
        cerebral_edema: 0 none; 1 focal/local oedema on neuroimaging (G3); 2 diffuse oedema on
            neuroimaging, decerebrate or decorticate posturing, cranial nerve VI palsy, papilloedema or
            Cushing's triad (G4).

    Tremor, myoclonus and intracranial haemorrhage are not ICANS domains (graded by CTCAE).
    """
    if not age_years >= 0.0:  # also rejects NaN
        raise ValueError("age_years must be a non-negative number")
    if consciousness < 0 or consciousness > 4:
        raise ValueError("consciousness must be 0 (normal) to 4 (unarousable)")
    if seizure < 0 or seizure > 2:
        raise ValueError("seizure must be 0 (none) to 2 (life-threatening)")
    if cerebral_edema < 0 or cerebral_edema > 2:
        raise ValueError("cerebral_edema must be 0 (none) to 2 (diffuse)")
    if age_years >= ICE_MIN_AGE_YEARS:
        grade = _ice_grade(encephalopathy_score)
    else:
        grade = _capd_grade(encephalopathy_score)
    grade = max(grade, consciousness)
    if seizure > 0:
        grade = max(grade, seizure + 2)
    if motor_weakness:
        grade = 4
    if cerebral_edema > 0:
        grade = max(grade, cerebral_edema + 2)
    return grade


# -------------------------------------------------------------------------------------------- response
@kernel
def response_category(marrow_blasts_percent: float, count_recovery: bool,
                      blast_threshold_percent: float = 5.0) -> int:
    """Marrow response code: ``RESPONSE_CR`` if blasts < threshold with count recovery (ANC >= 1.0e9/L
    and platelets >= 100e9/L in the CR definitions), ``RESPONSE_CRI`` if blasts < threshold without count
    recovery, else ``RESPONSE_NR``. A NaN blast percent (not evaluable) is NR: no remission is documented.

    Other CR conditions (no circulating blasts, CNS1, no extramedullary disease) are the caller's.
    """
    if not blast_threshold_percent > 0.0:
        raise ValueError("blast_threshold_percent must be positive")
    if marrow_blasts_percent < 0.0:
        raise ValueError("marrow_blasts_percent must be non-negative")
    if marrow_blasts_percent < blast_threshold_percent:
        return RESPONSE_CR if count_recovery else RESPONSE_CRI
    return RESPONSE_NR


# --------------------------------------------------------------------------------------- array versions
def _as_int(values: ArrayLike, name: str) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype.kind not in "biu" and not np.all(array == np.round(array)):
        raise ValueError(f"{name} must hold integer levels")
    return array.astype(np.int64)


def _as_bool(values: ArrayLike, name: str) -> NDArray[np.bool_]:
    array = np.asarray(values)
    if array.dtype.kind != "b" and not np.all((array == 0) | (array == 1)):
        raise ValueError(f"{name} must hold booleans")
    return array.astype(np.bool_)


def _flat(*arrays: NDArray) -> tuple[tuple[int, ...], list[NDArray]]:
    broadcast = np.broadcast_arrays(*arrays)
    return broadcast[0].shape, [a.flatten() for a in broadcast]  # copies: broadcast views are read-only


@kernel
def _crs_loop(fever, hypotension, hypoxia, anticytokine, out):  # pragma: no cover - compiled
    for i in range(out.size):
        out[i] = crs_grade_astct(fever[i], hypotension[i], hypoxia[i], anticytokine[i])


@kernel
def _icans_loop(age, score, consciousness, seizure, motor, edema, out):  # pragma: no cover - compiled
    for i in range(out.size):
        out[i] = icans_grade_astct(age[i], score[i], consciousness[i], seizure[i], motor[i], edema[i])


@numba.njit(cache=True, error_model="numpy")
def _response_loop(blasts, recovery, threshold, out):  # pragma: no cover - compiled
    for i in range(out.size):
        out[i] = response_category(blasts[i], recovery[i], threshold[i])


def crs_grades_astct(fever: ArrayLike, hypotension: ArrayLike, hypoxia: ArrayLike,
                     anticytokine_given: ArrayLike) -> NDArray[np.int64]:
    """:func:`crs_grade_astct` element-wise over broadcast arrays."""
    shape, args = _flat(_as_bool(fever, "fever"), _as_int(hypotension, "hypotension"),
                        _as_int(hypoxia, "hypoxia"), _as_bool(anticytokine_given, "anticytokine_given"))
    out = np.empty(args[0].size, dtype=np.int64)
    _crs_loop(*args, out)
    return out.reshape(shape)


def icans_grades_astct(age_years: ArrayLike, encephalopathy_score: ArrayLike, consciousness: ArrayLike,
                       seizure: ArrayLike, motor_weakness: ArrayLike,
                       cerebral_edema: ArrayLike) -> NDArray[np.int64]:
    """:func:`icans_grade_astct` element-wise over broadcast arrays."""
    shape, args = _flat(np.asarray(age_years, dtype=np.float64),
                        _as_int(encephalopathy_score, "encephalopathy_score"),
                        _as_int(consciousness, "consciousness"), _as_int(seizure, "seizure"),
                        _as_bool(motor_weakness, "motor_weakness"), _as_int(cerebral_edema, "cerebral_edema"))
    out = np.empty(args[0].size, dtype=np.int64)
    _icans_loop(*args, out)
    return out.reshape(shape)


def response_categories(marrow_blasts_percent: ArrayLike, count_recovery: ArrayLike,
                        blast_threshold_percent: ArrayLike = 5.0) -> NDArray[np.int64]:
    """:func:`response_category` element-wise over broadcast arrays."""
    shape, args = _flat(np.asarray(marrow_blasts_percent, dtype=np.float64),
                        _as_bool(count_recovery, "count_recovery"),
                        np.asarray(blast_threshold_percent, dtype=np.float64))
    out = np.empty(args[0].size, dtype=np.int64)
    _response_loop(*args, out)
    return out.reshape(shape)
