"""Observation layer: ASTCT 2019 CRS and ICANS grading against the consensus tables (Lee et al., BBMT 2019;
calibration_targets.md C1-C2), response categories, and the MRD / morphology / transgene / B-cell measurement
models against Poisson and binomial theory.

Random draws are fixed grids of uniforms (i + 1/2) / M, so every check is deterministic; tolerances are
stated where a grid average stands in for an expectation."""

from __future__ import annotations

import itertools
import math

import numba
import numpy as np
import pytest
from scipy.stats import binom, poisson

from leukosim.observe.assays import (
    ASSAYS, Assay, limit_of_detection,
    measure_blast_percent, measure_mrd,
)
from leukosim.model.toxicity import crs_signs
from leukosim.observe.grading import (
    RESPONSE_CR, RESPONSE_CRI, RESPONSE_LABELS, RESPONSE_NR, UNABLE_TO_PERFORM, crs_grade_astct,
    crs_grades_astct, icans_grade_astct, icans_grades_astct, response_categories, response_category,
)

GRID = 20_000
U = (np.arange(GRID) + 0.5) / GRID  # stratified uniforms in (0, 1)


# ================================================================================================ CRS
# (fever, hypotension, hypoxia, anticytokine_given, grade), hypotension: 0 none, 1 no vasopressor,
# 2 one vasopressor, 3 multiple; hypoxia: 0 none, 1 low-flow <= 6 L/min, 2 high-flow/facemask, 3 CPAP/BiPAP/
# ventilation. Each row of the ASTCT table, then the combination rule and the fever rule.
CRS_ROWS = [
    (False, 0, 0, False, 0),  # no CRS
    (True, 0, 0, False, 1),   # grade 1: fever, no hypotension, no hypoxia
    (True, 1, 0, False, 2),   # grade 2: hypotension not requiring vasopressors
    (True, 0, 1, False, 2),   # grade 2: low-flow nasal cannula or blow-by
    (True, 1, 1, False, 2),
    (True, 2, 0, False, 3),   # grade 3: one vasopressor +- vasopressin
    (True, 0, 2, False, 3),   # grade 3: high-flow cannula, facemask, non-rebreather, Venturi
    (True, 2, 2, False, 3),
    (True, 3, 0, False, 4),   # grade 4: multiple vasopressors
    (True, 0, 3, False, 4),   # grade 4: positive pressure
    (True, 3, 3, False, 4),
    (True, 2, 1, False, 3),   # Lee 2019 example: febrile + one vasopressor + low-flow O2 = grade 3
    (True, 1, 2, False, 3),   # the more severe of hypotension and hypoxia sets the grade
    (True, 1, 3, False, 4),
    (True, 3, 1, False, 4),
    (False, 2, 1, False, 0),  # no fever and no antipyretic/anti-cytokine therapy: not CRS
    (False, 3, 3, False, 0),
    (False, 0, 0, True, 0),   # after tocilizumab/steroids fever is not required: graded by the signs
    (False, 1, 0, True, 2),
    (False, 2, 1, True, 3),   # afebrile after tocilizumab + one vasopressor + low-flow O2 = grade 3
    (False, 0, 3, True, 4),
    (True, 0, 0, True, 1),
    (True, 3, 2, True, 4),
]


@pytest.mark.parametrize(("fever", "hypotension", "hypoxia", "treated", "grade"), CRS_ROWS)
def test_crs_table_rows(fever: bool, hypotension: int, hypoxia: int, treated: bool, grade: int) -> None:
    assert crs_grade_astct(fever, hypotension, hypoxia, treated) == grade


CRS_DOMAIN = list(itertools.product((False, True), range(4), range(4), (False, True)))


def test_crs_every_combination_against_the_table() -> None:
    """All 64 sign combinations against the consensus table read as data: each hypotension/hypoxia level
    names the column (grade) it first appears in."""
    column = {0: 1, 1: 2, 2: 3, 3: 4}
    for fever, hypotension, hypoxia, treated in CRS_DOMAIN:
        expected = 0 if not (fever or treated) else max(column[hypotension], column[hypoxia])
        if not fever and hypotension == 0 and hypoxia == 0:
            expected = 0
        signs = (fever, hypotension, hypoxia, treated)
        assert crs_grade_astct(*signs) == expected, signs


def test_sign_levels_deepen_by_the_level_ratio() -> None:
    """Hypotension and hypoxia reach level n at ``ratio**(n - 1)`` times their threshold (fluids / low-flow at
    the threshold, one vasopressor / high-flow at ``ratio`` times it, multiple vasopressors / positive pressure
    at its square) and stay at 3 beyond; fever starts at its own threshold."""
    fever_il6, hypotension_il6, hypoxia_il6, ratio = 20.0, 100.0, 300.0, 2.5
    for multiple, level in ((0.99, 0), (1.0, 1), (2.49, 1), (2.5, 2), (6.24, 2), (6.25, 3), (1.0e3, 3)):
        _, hypotension, hypoxia = crs_signs(multiple * hypotension_il6, fever_il6, hypotension_il6, hypoxia_il6, ratio)
        assert hypotension == level, multiple
        assert crs_signs(multiple * hypoxia_il6, fever_il6, hypotension_il6, hypoxia_il6, ratio)[2] == level
        assert hypoxia <= hypotension
    assert crs_signs(19.9, fever_il6, hypotension_il6, hypoxia_il6, ratio)[0] is False
    assert crs_signs(20.0, fever_il6, hypotension_il6, hypoxia_il6, ratio)[0] is True


def test_crs_monotone_in_every_sign() -> None:
    for fever, hypotension, hypoxia, treated in CRS_DOMAIN:
        grade = crs_grade_astct(fever, hypotension, hypoxia, treated)
        assert 0 <= grade <= 4
        assert crs_grade_astct(True, hypotension, hypoxia, treated) >= grade
        assert crs_grade_astct(fever, hypotension, hypoxia, True) >= grade
        if hypotension < 3:
            assert crs_grade_astct(fever, hypotension + 1, hypoxia, treated) >= grade
        if hypoxia < 3:
            assert crs_grade_astct(fever, hypotension, hypoxia + 1, treated) >= grade


def test_crs_array_version_matches_scalar() -> None:
    fever, hypotension, hypoxia, treated = (np.array(column) for column in zip(*CRS_DOMAIN))
    expected = [crs_grade_astct(*row) for row in CRS_DOMAIN]
    np.testing.assert_array_equal(crs_grades_astct(fever, hypotension, hypoxia, treated), expected)
    # broadcasting, and 0/1 integers accepted as booleans
    grades = crs_grades_astct(1, np.arange(4)[:, None], np.arange(4)[None, :], 0)
    assert grades.shape == (4, 4)
    assert grades[2, 1] == 3 and grades[0, 0] == 1


@pytest.mark.parametrize(("hypotension", "hypoxia"), [(-1, 0), (4, 0), (0, -1), (0, 4)])
def test_crs_rejects_unknown_levels(hypotension: int, hypoxia: int) -> None:
    with pytest.raises(ValueError):
        crs_grade_astct(True, hypotension, hypoxia, False)
    with pytest.raises(ValueError):
        crs_grades_astct([True], [hypotension], [hypoxia], [False])
    with pytest.raises(ValueError, match="integer"):
        crs_grades_astct(True, 1.5, 0, False)


@numba.njit
def _compiled_caller(fever, hypotension, hypoxia, treated, age, score):
    crs = crs_grade_astct(fever, hypotension, hypoxia, treated)
    icans = icans_grade_astct(age, score, 0, 0, False, 0)
    return crs, icans, response_category(3.0, True)


def test_grading_callable_from_compiled_code() -> None:
    assert _compiled_caller(True, 2, 1, False, 14.0, 5) == (3, 2, RESPONSE_CR)


# ============================================================================================== ICANS
ADULT, CHILD = 14.0, 6.0
# (age, encephalopathy score, consciousness, seizure, motor weakness, cerebral edema, grade)
ICANS_ROWS = [
    # ICE score (age >= 12): 10 normal, 7-9 G1, 3-6 G2, 0-2 G3, unable (unarousable) G4
    (ADULT, 10, 0, 0, False, 0, 0),
    (ADULT, 9, 0, 0, False, 0, 1),
    (ADULT, 7, 0, 0, False, 0, 1),
    (ADULT, 6, 0, 0, False, 0, 2),
    (ADULT, 3, 0, 0, False, 0, 2),
    (ADULT, 2, 0, 0, False, 0, 3),
    (ADULT, 0, 0, 0, False, 0, 3),   # ICE 0 while awake (e.g. global aphasia) = G3
    (ADULT, UNABLE_TO_PERFORM, 4, 0, False, 0, 4),  # ICE 0 and unarousable = G4
    (ADULT, UNABLE_TO_PERFORM, 0, 0, False, 0, 4),
    # depressed level of consciousness
    (ADULT, 10, 1, 0, False, 0, 1),  # awakens spontaneously
    (ADULT, 10, 2, 0, False, 0, 2),  # awakens to voice
    (ADULT, 10, 3, 0, False, 0, 3),  # awakens only to tactile stimulus
    (ADULT, 10, 4, 0, False, 0, 4),  # unarousable, stupor, coma
    # seizure, motor, raised ICP / cerebral oedema
    (ADULT, 10, 0, 1, False, 0, 3),  # seizure resolving rapidly / EEG seizure resolving with intervention
    (ADULT, 10, 0, 2, False, 0, 4),  # prolonged > 5 min or repetitive without return to baseline
    (ADULT, 10, 0, 0, True, 0, 4),   # deep focal motor weakness
    (ADULT, 10, 0, 0, False, 1, 3),  # focal/local oedema
    (ADULT, 10, 0, 0, False, 2, 4),  # diffuse oedema, posturing, CN VI palsy, papilloedema, Cushing's triad
    (ADULT, 3, 0, 1, False, 0, 3),   # Lee 2019 example: ICE 3 with a generalised seizure = G3
    (ADULT, 8, 2, 0, False, 0, 2),   # most severe domain
    (ADULT, 5, 1, 0, False, 1, 3),
    # CAPD (age < 12): 0 none, 1-8 G1 (awakens spontaneously) or G2 (awakens to voice), >= 9 G3, unable G4
    (CHILD, 0, 0, 0, False, 0, 0),
    (CHILD, 1, 0, 0, False, 0, 1),
    (CHILD, 8, 1, 0, False, 0, 1),
    (CHILD, 1, 2, 0, False, 0, 2),
    (CHILD, 8, 2, 0, False, 0, 2),
    (CHILD, 9, 0, 0, False, 0, 3),
    (CHILD, 32, 2, 0, False, 0, 3),
    (CHILD, 4, 3, 0, False, 0, 3),   # awakens only to tactile stimulus
    (CHILD, UNABLE_TO_PERFORM, 4, 0, False, 0, 4),
    (CHILD, 4, 1, 1, False, 0, 3),
    (CHILD, 4, 1, 2, False, 0, 4),
    (CHILD, 4, 1, 0, True, 0, 4),
    (CHILD, 0, 0, 0, False, 1, 3),
    (CHILD, 0, 0, 0, False, 2, 4),
    # the score switches from CAPD to ICE at 12 y: 9 is ICE G1 at 12, CAPD G3 below; 10 is normal ICE
    (12.0, 9, 0, 0, False, 0, 1),
    (11.99, 9, 0, 0, False, 0, 3),
    (12.0, 10, 0, 0, False, 0, 0),
    (11.99, 10, 0, 0, False, 0, 3),
    (0.5, 8, 0, 0, False, 0, 1),
]


@pytest.mark.parametrize(("age", "score", "consciousness", "seizure", "motor", "edema", "grade"), ICANS_ROWS)
def test_icans_table_rows(age: float, score: int, consciousness: int, seizure: int, motor: bool, edema: int,
                          grade: int) -> None:
    assert icans_grade_astct(age, score, consciousness, seizure, motor, edema) == grade


ICE_SCORES = [UNABLE_TO_PERFORM, *range(11)]
CAPD_SCORES = [UNABLE_TO_PERFORM, *range(33)]
OTHER_DOMAINS = list(itertools.product(range(5), range(3), (False, True), range(3)))


def _severity_order(scores: list[int], worse_when_lower: bool) -> list[int]:
    """Encephalopathy scores from least to most severe ('unable to perform' is the most severe)."""
    graded = sorted((s for s in scores if s != UNABLE_TO_PERFORM), reverse=worse_when_lower)
    return graded + [UNABLE_TO_PERFORM]


@pytest.mark.parametrize(("age", "scores", "worse_when_lower"), [(ADULT, ICE_SCORES, True),
                                                               (CHILD, CAPD_SCORES, False)])
def test_icans_monotone_in_every_domain(age: float, scores: list[int], worse_when_lower: bool) -> None:
    """Exhaustive over the integer domains: making any one domain worse never lowers the grade, and the
    grade equals the worst single-domain grade."""
    order = _severity_order(scores, worse_when_lower)
    for consciousness, seizure, motor, edema in OTHER_DOMAINS:
        grades = [icans_grade_astct(age, s, consciousness, seizure, motor, edema) for s in order]
        assert grades == sorted(grades)
        for score in scores:
            grade = icans_grade_astct(age, score, consciousness, seizure, motor, edema)
            single = [icans_grade_astct(age, score, 0, 0, False, 0),
                      icans_grade_astct(age, order[0], consciousness, 0, False, 0),
                      icans_grade_astct(age, order[0], 0, seizure, False, 0),
                      icans_grade_astct(age, order[0], 0, 0, motor, 0),
                      icans_grade_astct(age, order[0], 0, 0, False, edema)]
            assert grade == max(single)
            if consciousness < 4:
                assert icans_grade_astct(age, score, consciousness + 1, seizure, motor, edema) >= grade
            if seizure < 2:
                assert icans_grade_astct(age, score, consciousness, seizure + 1, motor, edema) >= grade
            if edema < 2:
                assert icans_grade_astct(age, score, consciousness, seizure, motor, edema + 1) >= grade
            assert icans_grade_astct(age, score, consciousness, seizure, True, edema) >= grade


def test_icans_array_version_matches_scalar() -> None:
    rows = np.array([row[:6] for row in ICANS_ROWS], dtype=object)
    grades = icans_grades_astct(rows[:, 0].astype(float), rows[:, 1].astype(int), rows[:, 2].astype(int),
                                rows[:, 3].astype(int), rows[:, 4].astype(bool), rows[:, 5].astype(int))
    np.testing.assert_array_equal(grades, [row[6] for row in ICANS_ROWS])


@pytest.mark.parametrize("args", [
    (ADULT, 11, 0, 0, False, 0), (ADULT, -2, 0, 0, False, 0), (CHILD, 33, 0, 0, False, 0),
    (ADULT, 10, 5, 0, False, 0), (ADULT, 10, 0, 3, False, 0), (ADULT, 10, 0, 0, False, 3),
    (-1.0, 10, 0, 0, False, 0), (math.nan, 10, 0, 0, False, 0),
])
def test_icans_rejects_unknown_levels(args: tuple) -> None:
    with pytest.raises(ValueError):
        icans_grade_astct(*args)


# =========================================================================================== response
@pytest.mark.parametrize(("blasts", "recovery", "threshold", "expected"), [
    (0.0, True, 5.0, RESPONSE_CR),
    (4.99, True, 5.0, RESPONSE_CR),
    (4.99, False, 5.0, RESPONSE_CRI),
    (5.0, True, 5.0, RESPONSE_NR),  # M1 marrow is < 5% blasts
    (60.0, False, 5.0, RESPONSE_NR),
    (0.9, True, 1.0, RESPONSE_CR),
    (1.0, False, 1.0, RESPONSE_NR),
    (math.nan, True, 5.0, RESPONSE_NR),  # not evaluable: no remission documented
])
def test_response_category(blasts: float, recovery: bool, threshold: float, expected: int) -> None:
    assert response_category(blasts, recovery, threshold) == expected
    assert response_categories([blasts], [recovery], threshold)[0] == expected


def test_response_default_threshold_and_labels() -> None:
    assert response_category(4.0, False) == RESPONSE_CRI
    assert RESPONSE_LABELS[RESPONSE_NR] == "NR" and RESPONSE_LABELS[RESPONSE_CRI] == "CRi"
    assert RESPONSE_LABELS[RESPONSE_CR] == "CR"
    categories = response_categories(np.array([1.0, 1.0, 7.0]), np.array([True, False, True]))
    np.testing.assert_array_equal(categories, [RESPONSE_CR, RESPONSE_CRI, RESPONSE_NR])
    with pytest.raises(ValueError):
        response_category(-1.0, True)
    with pytest.raises(ValueError):
        response_category(1.0, True, 0.0)


# ================================================================================================ MRD
MRD_ASSAYS = ["flow", "pcr", "ngs", "morphology"]


def test_assay_table() -> None:
    assert set(ASSAYS) == set(MRD_ASSAYS)
    assert limit_of_detection("flow") == pytest.approx(1e-4)
    assert limit_of_detection("pcr") == pytest.approx(1e-5)
    assert limit_of_detection("ngs") == pytest.approx(1e-6)
    assert limit_of_detection("morphology") == pytest.approx(1e-2)
    for name, assay in ASSAYS.items():
        assert assay.name == name and assay.source
        assert limit_of_detection(assay) == pytest.approx(assay.nominal_sensitivity)
    with pytest.raises(ValueError, match="unknown assay"):
        limit_of_detection("elisa")
    with pytest.raises(ValueError):
        Assay("bad", cells_analysed=1e5, min_events=0, efficiency=1.0, nominal_sensitivity=1e-4, source="")


@pytest.mark.parametrize("name", MRD_ASSAYS)
@pytest.mark.parametrize("multiple", [10.0, 40.0])
def test_mrd_mean_equals_true_fraction_above_lod(name: str, multiple: float) -> None:
    """Above the LoD the grid average of the measured fraction is the true fraction (within 0.2%: the
    mean of Poisson quantiles at GRID midpoints is close to the Poisson mean, and the probability of
    falling under min_events is < 1e-3 at 10 x LoD). Fractions stay <= 0.4, where capping at
    cells_analysed never acts."""
    fraction = multiple * limit_of_detection(name)
    measured = measure_mrd(np.full(GRID, fraction), name, U)
    assert measured.mean() == pytest.approx(fraction, rel=2e-3)
    cells = ASSAYS[name].cells_analysed
    assert measured.std() == pytest.approx(math.sqrt(fraction * cells) / cells, rel=2e-2)


@pytest.mark.parametrize("name", MRD_ASSAYS)
def test_mrd_detection_probability_at_lod_is_poisson(name: str) -> None:
    """At the LoD the expected event count is min_events: a sample is positive exactly when its uniform
    exceeds the Poisson CDF at min_events - 1, so the detected share of the grid is P(N >= min_events)
    to within 1/GRID."""
    assay = ASSAYS[name]
    k = assay.min_events
    measured = measure_mrd(np.full(GRID, limit_of_detection(name)), name, U)
    detected = measured > 0.0
    np.testing.assert_array_equal(detected, U > poisson.cdf(k - 1, k))
    assert detected.mean() == pytest.approx(poisson.sf(k - 1, k), abs=1.0 / GRID)
    # positives are whole event counts of at least min_events
    events = measured[detected] * assay.cells_analysed
    np.testing.assert_allclose(events, np.round(events), rtol=0, atol=1e-6)
    assert events.min() == pytest.approx(k)


def test_mrd_flow_detection_at_lod_hand_value() -> None:
    """P(Poisson(10) >= 10) = 1 - exp(-10) sum_{j<10} 10^j / j! = 0.54207..."""
    p = 1.0 - math.exp(-10.0) * sum(10.0**j / math.factorial(j) for j in range(10))
    assert p == pytest.approx(0.5420702855, abs=1e-9)
    detected = measure_mrd(np.full(GRID, 1e-4), "flow", U) > 0
    assert detected.mean() == pytest.approx(p, abs=1.0 / GRID)


@pytest.mark.parametrize("name", MRD_ASSAYS)
def test_mrd_zero_below_lod(name: str) -> None:
    lod = limit_of_detection(name)
    assert np.all(measure_mrd(np.zeros(GRID), name, U) == 0.0)
    assert np.all(measure_mrd(np.full(GRID, lod / 100.0), name, U) == 0.0)
    # anything reported lies at or above the reporting floor min_events / cells_analysed
    measured = measure_mrd(np.full(GRID, lod / 2.0), name, U)
    positive = measured[measured > 0]
    assert np.all(positive >= ASSAYS[name].min_events / ASSAYS[name].cells_analysed)
    assert positive.size / GRID == pytest.approx(poisson.sf(ASSAYS[name].min_events - 1,
                                                            ASSAYS[name].min_events / 2.0), abs=1.0 / GRID)


def test_mrd_deterministic_monotone_and_robust() -> None:
    fraction = np.geomspace(1e-7, 1.0, 57)
    u = np.linspace(0.01, 0.99, 57)
    first = measure_mrd(fraction, "flow", u)
    np.testing.assert_array_equal(first, measure_mrd(fraction.copy(), "flow", u.copy()))
    # non-decreasing in the uniform and in the true fraction
    assert np.all(np.diff(measure_mrd(np.full(GRID, 3e-4), "flow", U)) >= 0)
    assert np.all(np.diff(measure_mrd(fraction, "flow", np.full(57, 0.5))) >= 0)
    # never above 1, NaN passes through, broadcasting against a scalar uniform
    assert measure_mrd(np.array([1.0]), "flow", np.array([1.0 - 1e-12]))[0] <= 1.0
    out = measure_mrd(np.array([np.nan, 0.5]), "pcr", 0.5)
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.5, rel=1e-2)
    # a custom, less efficient assay under-reports by its efficiency
    half = Assay("half", cells_analysed=1e5, min_events=10, efficiency=0.5, nominal_sensitivity=2e-4,
                 source="test")
    assert limit_of_detection(half) == pytest.approx(2e-4)
    assert measure_mrd(np.full(GRID, 1e-2), half, U).mean() == pytest.approx(0.5e-2, rel=2e-3)


@pytest.mark.parametrize(("fraction", "u"), [(-0.1, 0.5), (1.1, 0.5), (0.1, 0.0), (0.1, 1.0)])
def test_mrd_rejects_bad_input(fraction: float, u: float) -> None:
    with pytest.raises(ValueError):
        measure_mrd(np.array([fraction]), "flow", np.array([u]))


# ======================================================================================== morphology
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.049, 0.3, 1.0])
def test_blast_percent_is_binomial_count(fraction: float) -> None:
    n = int(ASSAYS["morphology"].cells_analysed)
    percent = measure_blast_percent(np.full(GRID, fraction), U)
    counts = percent * n / 100.0
    np.testing.assert_allclose(counts, np.round(counts), rtol=0, atol=1e-9)
    counts = np.round(counts)
    # inverse CDF: F(k - 1) < u <= F(k)
    assert np.all(binom.cdf(counts - 1, n, fraction) < U)
    assert np.all(U <= binom.cdf(counts, n, fraction) + 1e-12)
    assert percent.mean() == pytest.approx(100.0 * fraction, rel=2e-3, abs=1e-9)


def test_blast_percent_count_size_and_nan() -> None:
    percent = measure_blast_percent(np.full(GRID, 0.2), U, cells_counted=200)
    assert np.all(np.isclose(percent * 2.0, np.round(percent * 2.0)))  # multiples of 0.5 %
    assert percent.std() == pytest.approx(100.0 * math.sqrt(0.2 * 0.8 / 200), rel=2e-2)
    assert np.isnan(measure_blast_percent(np.array([np.nan]), np.array([0.5]))[0])


# ========================================================================================= CAR transgene
def test_car_copies_per_ug_hand_computation() -> None:
    """The model's qPCR read-out: 50 CAR-T/uL x 2 copies/cell = 100 copies/uL over the DNA of the blood's
    nucleated cells (6.6 pg each); lymphodepletion (fewer leukocytes) raises copies/ug at the same CAR-T/uL."""
    from leukosim.model.layout import (C_CAR_PRESENT, D, N_CONTEXT, N_PATIENT, N_STATES, S_CAR_EFFECTOR,
                                       S_CAR_EXHAUSTED, S_CAR_MEMORY, S_MARROW, S_T_ACTIVE, S_T_RESTING)
    from leukosim.model.readouts import NORMAL_LEUKOCYTES_PER_UL, car_copies_per_ug
    from leukosim.model.registry import INDEX

    p = np.zeros(N_PATIENT)
    p[INDEX["blood_volume_ml_per_kg"]], p[D["weight_kg"]] = 100.0, 10.0  # 1e6 uL of blood
    p[INDEX["car_blood_fraction"]], p[INDEX["car_vector_copies"]] = 0.5, 2.0
    p[D["t_normal"]], p[D["marrow_normal"]] = 1.0, 1.0
    y = np.full(N_STATES, -np.inf)
    y[S_CAR_EFFECTOR] = math.log(1e8)  # 0.5 x 1e8 / 1e6 uL = 50 CAR-T/uL
    y[S_MARROW], y[S_T_RESTING] = 0.0, 0.0  # normal counts
    c = np.zeros(N_CONTEXT)
    c[C_CAR_PRESENT] = 1.0
    leukocytes = NORMAL_LEUKOCYTES_PER_UL + 50.0
    assert car_copies_per_ug(y, p, c) == pytest.approx(100.0 / (leukocytes * 6.6e-6), rel=1e-9)
    y[S_MARROW], y[S_T_RESTING] = math.log(0.1), math.log(0.1)  # counts at 10%
    depleted = 0.1 * NORMAL_LEUKOCYTES_PER_UL + 50.0
    assert car_copies_per_ug(y, p, c) == pytest.approx(100.0 / (depleted * 6.6e-6), rel=1e-9)
    assert S_CAR_MEMORY != S_CAR_EXHAUSTED and S_T_ACTIVE != S_T_RESTING
