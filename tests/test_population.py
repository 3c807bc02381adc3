"""Virtual population: truncated sampling, growth-reference body size, BSA and per-patient reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from rcpchgrowth.global_functions import measurement_from_sds
from scipy import stats
from scipy.special import logit

from leukosim import load_protocol, simulate_trial
from leukosim.engine.simulate import post_progression_survival
from leukosim.model.disease import marrow_cellularity
from leukosim.model.latent import CD22_PARTIAL_LOW_SHARE
from leukosim.model.layout import D
from leukosim.model.registry import INDEX, PARAMETERS, default_parameters
from leukosim.population import individual
from leukosim.population.body_size import bsa_m2, height_weight_from_sds
from leukosim.population.covariates import COVARIATE_STREAMS, Covariates, draw_covariates, sample_distribution
from leukosim.population.individual import IIV_OMEGA, individual_parameters, random_effects
from leukosim.population.streams import Stream, uniforms
from leukosim.protocol.schema import Distribution, Population

FRACTIONS = ("cd19_negative_fraction", "cd22_low_fraction", "lineage_switch_fraction")
DISTRIBUTED = ("age_years", "marrow_blasts_percent", "wbc_per_uL", *FRACTIONS, "t_cell_fitness",
               "chemosensitivity")


def make_population(**changes: object) -> Population:
    fields: dict[str, object] = {
        "disease": "relapsed_refractory",
        "age_years": {"distribution": "lognormal", "median": 11.0, "cv": 0.5, "range": [1.0, 25.0]},
        "male_fraction": 0.57,
        "marrow_blasts_percent": {"distribution": "uniform", "range": [5.0, 100.0]},
        "wbc_per_uL": {"distribution": "lognormal", "median": 8000.0, "cv": 1.5, "range": [100.0, 3.0e5]},
        "prior_hsct_fraction": 0.6,
        "prior_blinatumomab_fraction": 0.1,
        "cd19_negative_fraction": {"distribution": "logitnormal", "median": 0.01, "sd": 1.5},
        "cd22_low_fraction": {"distribution": "logitnormal", "median": 0.05, "sd": 1.0, "range": [0.0, 0.5]},
        "lineage_switch_fraction": {"distribution": "fixed", "value": 0.001},
        "t_cell_fitness": {"distribution": "lognormal", "median": 1.0, "cv": 0.4, "range": [0.1, 5.0]},
        "chemosensitivity": {"distribution": "normal", "mean": 1.0, "sd": 0.3, "range": [0.1, 3.0]},
    }
    fields.update(changes)
    return Population.model_validate(fields)


def truncated(cdf, low: float, high: float):
    """The CDF of a law with CDF ``cdf`` truncated to [low, high]."""
    return lambda x: (cdf(x) - cdf(low)) / (cdf(high) - cdf(low))


def lognormal(median: float, cv: float):
    return stats.lognorm(s=np.sqrt(np.log(1.0 + cv**2)), scale=median)


# (distribution, CDF of the truncated law built from scipy.stats)
LAWS = [
    ({"distribution": "normal", "mean": 1.0, "sd": 0.3, "range": [0.1, 3.0]},
     stats.truncnorm((0.1 - 1.0) / 0.3, (3.0 - 1.0) / 0.3, loc=1.0, scale=0.3).cdf),
    ({"distribution": "normal", "mean": 0.0, "sd": 1.0, "range": [-1.0, 0.5]},
     stats.truncnorm(-1.0, 0.5).cdf),
    ({"distribution": "normal", "mean": -5.0, "sd": 1.0, "range": [-5.0, 5.0]},  # half-normal
     stats.truncnorm(0.0, 10.0, loc=-5.0).cdf),
    ({"distribution": "normal", "mean": 2.0, "sd": 0.5}, stats.norm(2.0, 0.5).cdf),
    ({"distribution": "lognormal", "median": 8000.0, "cv": 1.5, "range": [100.0, 3.0e5]},
     truncated(lognormal(8000.0, 1.5).cdf, 100.0, 3.0e5)),
    ({"distribution": "lognormal", "median": 1.0, "cv": 0.4, "range": [0.9, 5.0]},
     truncated(lognormal(1.0, 0.4).cdf, 0.9, 5.0)),
    ({"distribution": "lognormal", "median": 11.0, "cv": 0.5}, lognormal(11.0, 0.5).cdf),
    ({"distribution": "logitnormal", "median": 0.05, "sd": 1.0, "range": [0.0, 0.5]},
     truncated(lambda x: stats.norm(logit(0.05), 1.0).cdf(logit(x)), 0.0, 0.5)),
    ({"distribution": "logitnormal", "median": 0.3, "sd": 2.0, "range": [0.2, 0.9]},
     truncated(lambda x: stats.norm(logit(0.3), 2.0).cdf(logit(x)), 0.2, 0.9)),
    ({"distribution": "logitnormal", "median": 0.01, "sd": 1.5},
     lambda x: stats.norm(logit(0.01), 1.5).cdf(logit(x))),
    ({"distribution": "uniform", "range": [5.0, 100.0]}, stats.uniform(5.0, 95.0).cdf),
    ({"distribution": "loguniform", "range": [0.01, 10.0]}, stats.loguniform(0.01, 10.0).cdf),
]


@pytest.mark.parametrize(("spec", "cdf"), LAWS, ids=[spec["distribution"] for spec, _ in LAWS])
def test_sample_distribution_matches_scipy_truncated_cdf(spec: dict, cdf) -> None:
    """Kolmogorov-Smirnov against the truncated law from scipy.stats, 200 000 draws, fixed seed."""
    dist = Distribution.model_validate(spec)
    draws = sample_distribution(dist, uniforms(2024, np.arange(200_000), 7))
    low, high = dist.bounds()
    assert np.all((draws >= low) & (draws <= high))
    assert stats.kstest(draws, cdf).pvalue > 1e-3


def test_sample_distribution_fixed_and_monotone() -> None:
    u = np.linspace(0.001, 0.999, 999)
    assert np.all(sample_distribution(Distribution(distribution="fixed", value=0.25), u) == 0.25)
    dist = Distribution(distribution="lognormal", median=3.0, cv=0.8, range=(0.5, 20.0))
    draws = sample_distribution(dist, u)
    assert np.all(np.diff(draws) > 0)


def test_logitnormal_range_outside_unit_interval_is_refused() -> None:
    dist = Distribution(distribution="logitnormal", median=0.5, sd=1.0, range=(0.1, 2.0))
    with pytest.raises(ValueError, match="within"):
        sample_distribution(dist, np.array([0.5]))


@pytest.mark.parametrize("reference", ["cdc", "uk-who"])
@pytest.mark.parametrize("sex", ["male", "female"])
def test_median_height_and_bmi_at_age_10_match_reference(reference: str, sex: str) -> None:
    """Medians match the reference M within 4 Monte Carlo SE (SE of a median: 1.2533 sd / sqrt(n))."""
    n = 20_000
    population = make_population(age_years={"distribution": "fixed", "value": 10.0},
                                 male_fraction=1.0 if sex == "male" else 0.0, growth_reference=reference)
    covariates = draw_covariates(population, 11, np.arange(n), default_parameters())
    assert np.all(covariates.male == (sex == "male"))
    bmi = covariates.weight_kg / (covariates.height_cm / 100.0) ** 2
    for values, measurement in ((covariates.height_cm, "height"), (bmi, "bmi")):
        median = measurement_from_sds(reference, 0.0, measurement, sex, 10.0)
        tolerance = 4 * 1.2533 * values.std() / np.sqrt(n)
        assert abs(np.median(values) - median) < tolerance


@pytest.mark.parametrize("reference", ["cdc", "uk-who"])
def test_height_and_bmi_match_rcpchgrowth_across_ages(reference: str) -> None:
    """Tabulated LMS agree with rcpchgrowth's own calculation (incl. CDC extended BMI above the 95th centile)
    to 0.1 %, from infancy to 20 y, on and off the 0.05-y grid and next to the 2 y and 4 y reference
    switches."""
    ages = [0.1, 0.5, 1.0, 1.97, 2.0, 2.01, 2.5, 3.33, 3.98, 4.0, 5.55, 10.0, 12.37, 15.0, 17.81, 19.96]
    sds = [-3.0, -1.5, 0.0, 1.0, 1.7, 2.5, 3.0]
    for sex in ("male", "female"):
        age, z = (grid.ravel() for grid in np.meshgrid(ages, sds))
        height, weight = height_weight_from_sds(age, np.full(age.size, sex == "male"), z, z, reference)
        for i in range(age.size):
            expected_height = measurement_from_sds(reference, z[i], "height", sex, age[i])
            # rcpchgrowth's CDC has no BMI below 2 y; the CDC recommends the WHO 2006 standard there
            bmi_reference = "who" if reference == "cdc" and age[i] < 2.0 else reference
            expected_bmi = measurement_from_sds(bmi_reference, z[i], "bmi", sex, age[i])
            assert height[i] == pytest.approx(expected_height, rel=1e-3)
            assert weight[i] / (height[i] / 100.0) ** 2 == pytest.approx(expected_bmi, rel=1e-3)


def test_body_size_holds_adult_values_and_clips_sds() -> None:
    male = np.array([True, True])
    height, weight = height_weight_from_sds(np.array([20.0, 27.0]), male, np.array([0.0, 0.0]),
                                            np.array([0.0, 0.0]))
    assert height[0] == pytest.approx(height[1]) and weight[0] == pytest.approx(weight[1])
    clipped = height_weight_from_sds(np.array([8.0, 8.0]), male, np.array([3.0, 9.0]), np.array([-3.0, -9.0]))
    np.testing.assert_allclose(clipped[0][0], clipped[0][1])
    np.testing.assert_allclose(clipped[1][0], clipped[1][1])


@pytest.mark.parametrize(("formula", "expected"), [
    ("mosteller", 1.2910),     # sqrt(150 * 40 / 3600) = sqrt(1.6667)
    ("haycock", 1.2858),       # 10^(log10 0.024265 + 0.3964 log10 150 + 0.5378 log10 40) = 10^0.10915
    ("dubois", 1.3029),        # 0.007184 * 150^0.725 * 40^0.425
    ("gehan_george", 1.3024),  # 0.0235 * 150^0.42246 * 40^0.51456
])
def test_bsa_formulas_hand_computed(formula: str, expected: float) -> None:
    assert float(bsa_m2(150.0, 40.0, formula)) == pytest.approx(expected, abs=1e-4)


def test_bsa_adult_reference_point_and_unknown_formula() -> None:
    assert float(bsa_m2(180.0, 80.0)) == pytest.approx(2.0)  # Mosteller: sqrt(14400 / 3600)
    both = bsa_m2(np.array([100.0, 180.0]), np.array([15.0, 80.0]))  # sqrt(1500 / 3600), sqrt(14400 / 3600)
    np.testing.assert_allclose(both, [0.6455, 2.0], atol=1e-4)
    with pytest.raises(ValueError, match="unknown BSA formula"):
        bsa_m2(150.0, 40.0, "boyd")  # type: ignore[arg-type]


def assert_same(first: Covariates, second: Covariates) -> None:
    for name, column in first.to_dict().items():
        np.testing.assert_array_equal(column, getattr(second, name), err_msg=name)


def test_patient_is_identical_whatever_cohort_size_chunking_or_order() -> None:
    population = make_population()
    values = default_parameters()
    full = draw_covariates(population, 99, np.arange(1000), values)
    assert_same(draw_covariates(population, 99, np.arange(10), values), full.take(np.arange(10)))
    chunks = [draw_covariates(population, 99, np.arange(start, start + 500), values) for start in (0, 500)]
    assert_same(Covariates.concat(chunks), full)
    picked = np.array([999, 3, 500, 42])
    assert_same(draw_covariates(population, 99, picked, default_parameters()), full.take(picked))
    other_seed = draw_covariates(population, 100, np.arange(1000), default_parameters())
    assert not np.array_equal(other_seed.age_years, full.age_years)


def test_each_covariate_has_its_own_stream() -> None:
    """Changing one covariate's law leaves every other covariate of every patient unchanged."""
    assert len(set(COVARIATE_STREAMS)) == len(COVARIATE_STREAMS)
    assert len(COVARIATE_STREAMS) <= dict(Stream.BLOCKS)["covariates"]
    base = draw_covariates(make_population(), 5, np.arange(2000), default_parameters())
    other_wbc = make_population(wbc_per_uL={"distribution": "uniform", "range": [1.0e3, 2.0e3]})
    changed = draw_covariates(other_wbc, 5, np.arange(2000), default_parameters())
    for name, column in base.to_dict().items():
        if name != "wbc_per_uL":
            np.testing.assert_array_equal(column, getattr(changed, name), err_msg=name)
    draws = np.column_stack([base.age_years, base.marrow_blasts_percent, base.wbc_per_uL, base.t_cell_fitness,
                             base.chemosensitivity, base.cd19_negative_fraction])
    ranks = stats.spearmanr(draws).statistic
    assert np.all(np.abs(ranks[np.triu_indices(6, 1)]) < 0.1)


def test_a_parameters_random_effect_is_keyed_by_its_name_not_its_place_in_the_registry(monkeypatch) -> None:
    """Reordering the registry (as inserting a parameter does) leaves every patient's random effect of every
    parameter unchanged; named streams are distinct and above every stream block."""
    covariates = draw_covariates(make_population(), 3, np.arange(50), default_parameters())
    before = random_effects(covariates, 3)
    order = np.arange(len(PARAMETERS))[::-1]
    monkeypatch.setattr(individual, "PARAMETERS", tuple(PARAMETERS[i] for i in order))
    monkeypatch.setattr(individual, "IIV_OMEGA", IIV_OMEGA[order])
    after = random_effects(covariates, 3)
    assert np.count_nonzero(before.any(axis=0)) > 10
    np.testing.assert_array_equal(after[:, order], before)
    names = [p.name for p in PARAMETERS] + ["crs_susceptibility", "icans_susceptibility", "t_cell_kill_sensitivity",
                                            "marrow_reserve", "t_cell_resistant", "chemosensitivity_other"]
    streams = {Stream.named(f"parameters/{name}") for name in names}
    assert len(streams) == len(names)
    assert min(streams) > sum(size for _, size in Stream.BLOCKS) and max(streams) < 2**63


def test_latent_features_follow_the_parameter_sets_laws_unless_the_protocol_states_one() -> None:
    """Without a stated law, the CD22-low share is logit-normal around the set's median, T-cell fitness is
    log-normal with the set's relapsed median (1 at diagnosis), chemosensitivity's spread is the stage's CV; a
    stated law wins."""
    latent = {name: None for name in ("cd19_negative_fraction", "cd22_low_fraction", "lineage_switch_fraction",
                                      "t_cell_fitness", "chemosensitivity")}
    values = default_parameters().replace(preexisting_cd22_low_median=1.0e-4, t_cell_fitness_relapsed_median=0.5,
                                          chemosensitivity_cv_newly_diagnosed=1.2, chemosensitivity_cv_relapsed=0.6,
                                          preexisting_cd22_low_logit_sd=2.0, cd22_partial_fraction=0.01)
    n = 40_000
    relapsed = draw_covariates(make_population(**latent), 2, np.arange(n), values)
    first_line = draw_covariates(make_population(disease="newly_diagnosed", **latent), 2, np.arange(n), values)
    law = relapsed.cd22_low_fraction[relapsed.cd22_low_fraction < CD22_PARTIAL_LOW_SHARE[0]]  # not partial
    assert np.median(law) == pytest.approx(1.0e-4, rel=0.05)
    assert np.std(logit(law)) == pytest.approx(values["preexisting_cd22_low_logit_sd"], rel=0.03)
    assert np.median(relapsed.t_cell_fitness) == pytest.approx(0.5, rel=0.03)
    assert np.median(first_line.t_cell_fitness) == pytest.approx(1.0, rel=0.03)
    assert np.std(np.log(first_line.chemosensitivity)) > 1.5 * np.std(np.log(relapsed.chemosensitivity))
    stated = draw_covariates(make_population(), 2, np.arange(n), values)
    assert np.median(stated.cd22_low_fraction) > 1e-3  # make_population states its own law


def test_a_partial_cd22_leukemia_is_a_bernoulli_feature_with_a_uniform_cd22_low_share() -> None:
    """A share ``cd22_partial_fraction`` of leukemias (binomial test) express CD22 on only part of their blasts:
    their CD22-low share is uniform on CD22_PARTIAL_LOW_SHARE (KS test); the others follow the logit-normal law.
    A protocol that states its own law of the share has no partial leukemias added."""
    values = default_parameters().replace(cd22_partial_fraction=0.3, preexisting_cd22_low_median=1.0e-4,
                                          preexisting_cd22_low_logit_sd=1.0)
    n = 20_000
    shares = draw_covariates(make_population(cd22_low_fraction=None), 4, np.arange(n), values).cd22_low_fraction
    low, high = CD22_PARTIAL_LOW_SHARE
    partial = shares >= low
    assert stats.binomtest(int(partial.sum()), n, 0.3).pvalue > 1e-3
    assert stats.kstest(shares[partial], stats.uniform(low, high - low).cdf).pvalue > 1e-3
    assert np.median(shares[~partial]) == pytest.approx(1.0e-4, rel=0.05)
    stated = [draw_covariates(make_population(), 4, np.arange(n), values.replace(cd22_partial_fraction=fraction))
              for fraction in (0.01, 0.6)]
    np.testing.assert_array_equal(stated[0].cd22_low_fraction, stated[1].cd22_low_fraction)


def test_draws_within_ranges_and_fractions_match() -> None:
    population = make_population()
    n = 50_000
    covariates = draw_covariates(population, 3, np.arange(n), default_parameters())
    for name in DISTRIBUTED:
        low, high = getattr(population, name).bounds()
        values = getattr(covariates, name)
        assert np.all((values >= low) & (values <= high)), name
    flags_and_fractions = ((covariates.male, 0.57), (covariates.prior_hsct, 0.6),
                           (covariates.prior_blinatumomab, 0.1))
    for flags, fraction in flags_and_fractions:
        assert abs(flags.mean() - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n)
    assert covariates.patient_id.dtype == np.int64
    assert covariates.male.dtype == bool and covariates.prior_hsct.dtype == bool


def test_body_size_physiologically_plausible() -> None:
    three = make_population(age_years={"distribution": "fixed", "value": 3.0})
    at_three = draw_covariates(three, 8, np.arange(20_000), default_parameters())
    assert np.all((at_three.height_cm > 80.0) & (at_three.height_cm < 115.0))
    assert np.all((at_three.weight_kg > 9.0) & (at_three.weight_kg < 25.0))
    all_ages = make_population(age_years={"distribution": "uniform", "range": [0.0, 25.0]})
    everyone = draw_covariates(all_ages, 8, np.arange(50_000), default_parameters())
    assert np.all((everyone.height_cm > 40.0) & (everyone.height_cm < 210.0))
    assert np.all((everyone.weight_kg > 2.0) & (everyone.weight_kg < 200.0))
    np.testing.assert_allclose(everyone.bsa_m2, np.sqrt(everyone.height_cm * everyone.weight_kg / 3600.0))
    older = everyone.age_years > 12.0
    assert np.median(everyone.height_cm[older]) > np.median(everyone.height_cm[~older])


@pytest.mark.parametrize("maturation", ["lower bound", "upper bound", "shipped"])
def test_normal_blood_b_cells_at_enrollment_are_in_the_healthy_childrens_range(maturation: str) -> None:
    """The B-cell maturation rate sets the normal mature B pool (maturation x precursors / death). Anywhere within
    its bounds, and in the shipped set, a patient with 5% marrow blasts (95% of the normal pool) has the blood B
    count of a child (CD19+ cells of the order of 100-2,000/uL, falling with age; Shearer 2003), not the
    7,400/uL that calibrated-0.11 had reached by speeding maturation, which made normal B cells rather than the
    leukemia drive CAR-T expansion and CRS."""
    values = default_parameters()
    low, high = PARAMETERS[INDEX["b_maturation_rate"]].bounds
    rate = {"lower bound": low, "upper bound": high, "shipped": values["b_maturation_rate"]}[maturation]
    protocol = load_protocol("eliana")
    blasts = Distribution(distribution="uniform", range=(5.0, 5.01))
    protocol = protocol.model_copy(update={"population": protocol.population.model_copy(
        update={"marrow_blasts_percent": blasts})})
    day0 = simulate_trial(protocol, 50, seed=3, trajectory_patients=50,
                          parameters=values.replace(name=maturation, b_maturation_rate=rate)
                          ).trajectories.query("day == 0")
    assert 100.0 < day0["b_cells_per_uL"].min() and day0["b_cells_per_uL"].max() < 2000.0


def test_covariates_take_concat_and_to_dict() -> None:
    covariates = draw_covariates(make_population(), 1, np.arange(20), default_parameters())
    table = covariates.to_dict()
    assert list(table)[:3] == ["patient_id", "age_years", "male"] and len(table) == 18
    assert all(len(column) == 20 for column in table.values())
    assert len(covariates.take(covariates.male)) == int(covariates.male.sum())
    assert_same(Covariates.concat([covariates.take(slice(0, 7)), covariates.take(slice(7, 20))]), covariates)
    with pytest.raises(ValueError, match="differ in length"):
        Covariates(**{**table, "age_years": table["age_years"][:3]})


def test_disease_stage_and_transplant_access_draws() -> None:
    n = 20_000
    relapsed = draw_covariates(make_population(), 4, np.arange(n), default_parameters())
    first_line = draw_covariates(make_population(disease="newly_diagnosed"), 4, np.arange(n), default_parameters())
    assert relapsed.relapsed.all() and not first_line.relapsed.any()
    # the access quantile is uniform on (0, 1) (Kolmogorov-Smirnov) and shared by the same patient id
    assert stats.kstest(relapsed.hsct_access_quantile, "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(relapsed.hsct_access_quantile, first_line.hsct_access_quantile)


def test_adults_have_more_transplant_mortality_and_less_cure_after_progression_children_none() -> None:
    """Above 18 y the TRM hazard is multiplied by (age / 18)^trm_adult_age_exponent and the post-progression cure
    fractions divided by (age / 18)^post_progression_cure_adult_age_exponent; below it neither moves."""
    values = default_parameters().replace(trm_adult_age_exponent=1.5, post_progression_cure_adult_age_exponent=2.0,
                                          trm_hazard=0.002, post_progression_cure_relapsed=0.2)
    ages = {"distribution": "uniform", "range": [2.0, 75.0]}
    covariates = draw_covariates(make_population(age_years=ages), 3, np.arange(400), values)
    p = individual_parameters(values, covariates, 3)
    age = covariates.age_years
    adult = age > 18.0
    assert 50 < adult.sum() < 400
    trm = p[:, INDEX["trm_hazard"]] / np.exp(random_effects(covariates, 3)[:, INDEX["trm_hazard"]])
    np.testing.assert_allclose(trm[~adult], 0.002)
    np.testing.assert_allclose(trm[adult], 0.002 * (age[adult] / 18.0) ** 1.5)
    cure = p[:, INDEX["post_progression_cure_relapsed"]]
    np.testing.assert_allclose(cure[~adult], 0.2)
    np.testing.assert_allclose(cure[adult], 0.2 / (age[adult] / 18.0) ** 2.0)


def test_marrow_cellularity_falls_with_age_into_adulthood() -> None:
    """Pediatric series, then Hartsock's adult values: 50% at 30-69 y, 29% at 70-79 y."""
    np.testing.assert_allclose(marrow_cellularity(np.array([1.0, 3.0, 7.0, 15.0, 25.0, 45.0, 72.0])),
                               [0.798, 0.686, 0.591, 0.60, 0.60, 0.50, 0.29])


def test_relapsed_disease_chemosensitivity_is_scaled_by_the_registry_factor() -> None:
    values = default_parameters().replace(chemosensitivity_relapsed=0.3)
    ids = np.arange(50)
    for disease, factor in (("relapsed_refractory", 0.3), ("first_relapse", 0.3), ("newly_diagnosed", 1.0)):
        covariates = draw_covariates(make_population(disease=disease), 2, ids, default_parameters())
        p = individual_parameters(values, covariates, 2)
        np.testing.assert_allclose(p[:, D["chemosensitivity"]], factor * covariates.chemosensitivity)


def test_late_first_relapses_are_drawn_at_the_population_share_with_their_own_chemosensitivity() -> None:
    """A first relapse is late with the population's probability (binomial test), whatever the other draws
    (the ages of the same patient ids do not change); a late relapse's chemosensitivity is scaled by
    chemosensitivity_late_relapse, an early one's by chemosensitivity_relapsed; other stages have no late
    relapse (located error)."""
    n = 20_000
    values = default_parameters().replace(chemosensitivity_relapsed=0.3, chemosensitivity_late_relapse=0.9)
    none_late = draw_covariates(make_population(disease="first_relapse"), 5, np.arange(n), values)
    mixed = draw_covariates(make_population(disease="first_relapse", late_relapse_fraction=0.4), 5, np.arange(n),
                            values)
    assert not none_late.late_relapse.any()
    assert stats.binomtest(int(mixed.late_relapse.sum()), n, 0.4).pvalue > 1e-3
    np.testing.assert_array_equal(mixed.age_years, none_late.age_years)
    p = individual_parameters(values, mixed, 5)
    factor = np.where(mixed.late_relapse, 0.9, 0.3)
    np.testing.assert_allclose(p[:, D["chemosensitivity"]], factor * mixed.chemosensitivity)
    with pytest.raises(ValueError, match="late_relapse_fraction"):
        make_population(disease="relapsed_refractory", late_relapse_fraction=0.4)


def test_chemosensitivity_outside_the_induction_class_is_a_power_of_the_patients_times_its_own_factor() -> None:
    """Regimens outside the induction class see the patient's chemosensitivity raised to
    chemosensitivity_shared_exponent, with the same disease-stage factor, times a factor of their own:
    log-normal with median 1 and log SD chemosensitivity_other_sd (Kolmogorov-Smirnov), independent of the
    induction chemosensitivity (Spearman); a twin assumes that factor at its median."""
    values = default_parameters().replace(chemosensitivity_relapsed=0.4, chemosensitivity_shared_exponent=0.3,
                                          chemosensitivity_other_sd=0.6)
    for disease, factor in (("relapsed_refractory", 0.4), ("newly_diagnosed", 1.0)):
        covariates = draw_covariates(make_population(disease=disease), 3, np.arange(5_000), default_parameters())
        p = individual_parameters(values, covariates, 3)
        np.testing.assert_allclose(p[:, D["chemosensitivity"]], factor * covariates.chemosensitivity)
        own = np.log(p[:, D["chemosensitivity_other"]] / (factor * covariates.chemosensitivity ** 0.3))
        assert stats.kstest(own, "norm", args=(0.0, 0.6)).pvalue > 1e-3
        assert abs(stats.spearmanr(own, covariates.chemosensitivity).statistic) < 0.05
        individual.latent_effects_at_median(p, values, covariates)
        np.testing.assert_allclose(p[:, D["chemosensitivity_other"]], factor * covariates.chemosensitivity ** 0.3)


def test_leukemia_t_cell_kill_sensitivity_is_lognormal_with_the_registry_sd() -> None:
    """The patient's sensitivity of leukemic cells to T-cell killing (no resistant leukemias): median 1, log SD
    from the registry (Kolmogorov-Smirnov against the normal law), and the same for a patient id in any cohort."""
    values = default_parameters().replace(t_cell_kill_sensitivity_sd=0.9, t_cell_resistant_fraction=0.005,
                                          t_cell_resistant_kill_factor=1.0)
    covariates = draw_covariates(make_population(), 5, np.arange(20_000), default_parameters())
    logs = np.log(individual_parameters(values, covariates, 5)[:, D["t_cell_kill_sensitivity"]])
    assert stats.kstest(logs, "norm", args=(0.0, 0.9)).pvalue > 1e-3
    few = individual_parameters(values, draw_covariates(make_population(), 5, np.arange(7), default_parameters()), 5)
    np.testing.assert_array_equal(np.log(few[:, D["t_cell_kill_sensitivity"]]), logs[:7])


def test_a_resistant_leukemia_is_a_bernoulli_feature_that_lowers_t_cell_kill_and_exhausts_car_t() -> None:
    """A share ``t_cell_resistant_fraction`` of patients (binomial test) have a leukemia resistant to T-cell
    killing: their kill sensitivity is the log-normal draw times ``t_cell_resistant_kill_factor`` (the same
    draw as without resistance) and their CAR-T exhaustion factor ``t_cell_resistant_car_exhaustion_factor``;
    the others have factor 1. A twin assumes the median patient: not resistant."""
    values = default_parameters().replace(t_cell_resistant_fraction=0.3, t_cell_resistant_kill_factor=0.02,
                                          t_cell_resistant_car_exhaustion_factor=7.0)
    covariates = draw_covariates(make_population(), 8, np.arange(20_000), default_parameters())
    p = individual_parameters(values, covariates, 8)
    exhaustion = p[:, D["car_exhaustion_factor"]]
    resistant = exhaustion == 7.0
    assert set(np.unique(exhaustion)) == {1.0, 7.0}
    assert stats.binomtest(int(resistant.sum()), resistant.size, 0.3).pvalue > 1e-3
    sensitive = individual_parameters(values.replace(t_cell_resistant_fraction=0.005), covariates, 8)
    kept = sensitive[:, D["car_exhaustion_factor"]] == 1.0
    np.testing.assert_allclose(p[resistant & kept, D["t_cell_kill_sensitivity"]],
                               0.02 * sensitive[resistant & kept, D["t_cell_kill_sensitivity"]])
    np.testing.assert_array_equal(p[~resistant, D["t_cell_kill_sensitivity"]],
                                  sensitive[~resistant, D["t_cell_kill_sensitivity"]])
    individual.latent_effects_at_median(p, values, covariates)
    np.testing.assert_array_equal(p[:, D["car_exhaustion_factor"]], 1.0)


@pytest.mark.parametrize(("disease", "median"), [("relapsed_refractory", 0.2), ("newly_diagnosed", 1.0)])
def test_marrow_reserve_is_lognormal_around_the_disease_stage_median(disease: str, median: float) -> None:
    """The patient's marrow reserve (factor on normal marrow regrowth): log-normal with the stage's median
    (relapsed: the registry's, newly diagnosed: 1) and the registry's log SD (Kolmogorov-Smirnov), on its own
    stream (the same patient id gets the same draw in any cohort); at the median where a twin assumes it."""
    values = default_parameters().replace(marrow_reserve_relapsed_median=0.2, marrow_reserve_sd=0.7)
    covariates = draw_covariates(make_population(disease=disease), 6, np.arange(20_000), default_parameters())
    p = individual_parameters(values, covariates, 6)
    logs = np.log(p[:, D["marrow_reserve"]])
    assert stats.kstest(logs, "norm", args=(np.log(median), 0.7)).pvalue > 1e-3
    few = individual_parameters(values, covariates.take(slice(0, 7)), 6)
    np.testing.assert_array_equal(np.log(few[:, D["marrow_reserve"]]), logs[:7])
    individual.latent_effects_at_median(p, values, covariates)
    np.testing.assert_array_equal(p[:, D["marrow_reserve"]], median)
    np.testing.assert_array_equal(p[:, D["t_cell_kill_sensitivity"]], 1.0)


def test_relapsed_disease_grows_by_the_registry_factor() -> None:
    """The same patient (same random effects) has net leukemic growth ``leukemia_growth_relapsed_factor`` times
    higher as relapsed disease than as newly diagnosed disease."""
    values = default_parameters().replace(leukemia_growth_relapsed_factor=1.7)
    ids = np.arange(50)
    growth = {}
    for disease in ("relapsed_refractory", "newly_diagnosed"):
        covariates = draw_covariates(make_population(disease=disease), 2, ids, default_parameters())
        growth[disease] = individual_parameters(values, covariates, 2)[:, INDEX["leukemia_net_growth"]]
    np.testing.assert_allclose(growth["relapsed_refractory"], 1.7 * growth["newly_diagnosed"], rtol=1e-15)
    assert np.unique(growth["newly_diagnosed"]).size == ids.size  # with its between-patient variability


@pytest.mark.parametrize("shape", [1.0, 0.5])
def test_survival_after_progression_is_a_cure_mixture_with_weibull_deaths(shape: float) -> None:
    """Days from progression to death: the stage's cure fraction never dies (binomial 99.9% interval); the
    others die after Weibull times (Kolmogorov-Smirnov against SciPy's weibull_min) with median
    ln 2 / post_progression_death_rate and the registry shape; shape 1 is the exponential law of that rate."""
    values = default_parameters().replace(post_progression_death_rate=0.002, post_progression_survival_shape=shape,
                                          post_progression_cure_newly_diagnosed=0.3,
                                          post_progression_cure_relapsed=0.1)
    covariates = draw_covariates(make_population(), 6, np.arange(20_000), default_parameters())
    p = individual_parameters(values, covariates, 6)
    u = uniforms(6, covariates.patient_id, Stream.block("post_progression"))
    median = np.log(2.0) / 0.002
    scale = median / np.log(2.0) ** (1.0 / shape)
    for relapsed, cure in ((False, 0.3), (True, 0.1)):
        days = post_progression_survival(p, np.full(u.size, relapsed), np.zeros(u.size, dtype=bool), u)
        cured = np.isinf(days)
        low, high = stats.binom.interval(0.999, u.size, cure)
        assert low <= cured.sum() <= high
        assert stats.kstest(days[~cured], stats.weibull_min(shape, scale=scale).cdf).pvalue > 1e-3
        if shape == 1.0:
            assert stats.kstest(days[~cured], stats.expon(scale=1 / 0.002).cdf).pvalue > 1e-3


def test_refractory_disease_dies_the_refractory_factor_sooner() -> None:
    """Refractory disease (never in remission) has the same cure fraction and Weibull shape, and its times to
    death are those after relapse divided by post_progression_refractory_factor (same uniforms)."""
    values = default_parameters().replace(post_progression_refractory_factor=3.0)
    covariates = draw_covariates(make_population(), 6, np.arange(2_000), default_parameters())
    p = individual_parameters(values, covariates, 6)
    u = uniforms(6, covariates.patient_id, Stream.block("post_progression"))
    relapsed = np.ones(u.size, dtype=bool)
    after_relapse = post_progression_survival(p, relapsed, np.zeros(u.size, dtype=bool), u)
    refractory = post_progression_survival(p, relapsed, np.ones(u.size, dtype=bool), u)
    cured = np.isinf(after_relapse)
    assert np.array_equal(cured, np.isinf(refractory)) and 0 < cured.sum() < u.size
    np.testing.assert_allclose(refractory[~cured], after_relapse[~cured] / 3.0, rtol=1e-12)
