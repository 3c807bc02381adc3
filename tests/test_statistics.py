"""Trial statistics (leukosim.endpoints.statistics) against hand computations, lifelines itself and known truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

import leukosim
from leukosim.endpoints.summary import arm_summary
from leukosim.protocol.load import parse_protocol
from leukosim.endpoints.statistics import (DAYS_PER_MONTH, analysed, car_kinetics, cumulative_incidence_of_relapse,
                                           hazard_ratio, response_rates, survival_table, toxicity_table,
                                           wilson_interval)


def _survival_patients(days, events, arm="A", failed=0) -> pd.DataFrame:
    """Minimal patients table for survival functions; ``failed`` extra rows with status != 'ok' (and absurd data)."""
    n = len(days)
    table = pd.DataFrame({
        "patient_id": np.arange(n), "arm": arm, "status": "ok",
        "efs_days": pd.array(days, dtype="Float64"), "efs_event": pd.array(events, dtype="boolean"),
    })
    bad = pd.DataFrame({"patient_id": np.arange(n, n + failed), "arm": arm, "status": "too_many_steps",
                        "efs_days": pd.array([0.001] * failed, dtype="Float64"),
                        "efs_event": pd.array([True] * failed, dtype="boolean")})
    return pd.concat([table, bad], ignore_index=True)


# --- Wilson interval ----------------------------------------------------------------------------------------------

def test_wilson_interval_hand_values():
    """z = 1.959964. 8/10: centre (0.8 + 0.19207)/1.38415 = 0.71677, half width
    1.959964 * sqrt(0.016 + 0.0096037)/1.38415 = 0.22655 -> (0.4902, 0.9433).
    0/10: (0, 2 * 0.19207/1.38415) = (0, 0.2775). 10/10 mirrors 0/10: (0.7225, 1)."""
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-5)
    for n in (3, 7, 200):  # the ends are exact, not a rounding above 0 / below 1
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_wilson_interval_vectorised_level_and_empty():
    low, high = wilson_interval([8, 0, 10], [10, 10, 10])
    np.testing.assert_allclose(low, [0.4902, 0.0, 0.7225], atol=5e-5)
    np.testing.assert_allclose(high, [0.9433, 0.2775, 1.0], atol=5e-5)
    narrow, wide = wilson_interval(8, 10, level=0.90), wilson_interval(8, 10, level=0.99)
    assert wide[0] < 0.4902 < narrow[0] and narrow[1] < 0.9433 < wide[1]
    assert np.isnan(wilson_interval(0, 0)).all()
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# --- Kaplan-Meier ---------------------------------------------------------------------------------------------------

def test_km_landmark_median_rmst_by_hand_and_against_lifelines():
    """Durations 1..5, all events: S(t) steps 1, 0.8, 0.6, 0.4, 0.2, 0 at t = 1..5, so S(2.5) = 0.6 and the median
    (first t with S(t) <= 0.5) is 3. RMST up to 4 is 1 + 0.8 + 0.6 + 0.4 = 2.8. Its Greenwood-type variance
    sum A_i^2 d_i/(n_i(n_i - d_i)) has A = 1.8, 1.0, 0.4 at t = 1, 2, 3 with n = 5, 4, 3:
    1.8^2/20 + 1/12 + 0.4^2/6 = 0.272. The failed patients (status != 'ok') must not count."""
    days = [1.0, 2.0, 3.0, 4.0, 5.0]
    patients = _survival_patients(days, [True] * 5, failed=3)
    table = survival_table(patients, "efs", landmarks_months=(2.5 / DAYS_PER_MONTH,), horizon_days=4.0)
    landmark = table[table["statistic"] == "survival"].iloc[0]
    assert landmark["estimate"] == pytest.approx(0.6, abs=1e-12)
    assert landmark["n"] == 5 and landmark["events"] == 5 and landmark["n_at_risk"] == 3

    kmf = KaplanMeierFitter().fit(days, [True] * 5)
    assert landmark["estimate"] == pytest.approx(float(kmf.survival_function_at_times(2.5).iloc[0]), abs=1e-12)
    bands = kmf.confidence_interval_survival_function_.loc[2.0]
    assert (landmark["ci_low"], landmark["ci_high"]) == pytest.approx((bands.iloc[0], bands.iloc[1]), abs=1e-12)

    median = table[table["statistic"] == "median"].iloc[0]
    assert median["estimate"] == pytest.approx(3.0) == pytest.approx(kmf.median_survival_time_)
    assert median["ci_low"] <= 3.0 <= median["ci_high"]

    rmst = table[table["statistic"] == "rmst"].iloc[0]
    assert rmst["estimate"] == pytest.approx(2.8, abs=1e-12)
    half_width = 1.959964 * np.sqrt(0.272)
    assert (rmst["ci_low"], rmst["ci_high"]) == pytest.approx((2.8 - half_width, 2.8 + half_width), abs=1e-5)


def test_km_with_censoring_against_lifelines():
    """Censoring at 2 and 4: S = 1 * 5/6 (t=1) * 3/4 (t=3) * 1/2 (t=5) -> S(3.5) = 0.625, S(6) = 0.3125; median 5."""
    days = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    events = [True, False, True, False, True, False]
    patients = _survival_patients(days, events)
    months = (3.5 / DAYS_PER_MONTH, 6.0 / DAYS_PER_MONTH)
    table = survival_table(patients, "efs", landmarks_months=months)
    estimates = table.loc[table["statistic"] == "survival", "estimate"].to_numpy()
    np.testing.assert_allclose(estimates, [0.625, 0.3125], atol=1e-12)
    kmf = KaplanMeierFitter().fit(days, events)
    np.testing.assert_allclose(estimates, kmf.survival_function_at_times([3.5, 6.0]).to_numpy(), atol=1e-12)
    assert table.loc[table["statistic"] == "median", "estimate"].iloc[0] == pytest.approx(5.0)
    with pytest.raises(ValueError):
        survival_table(patients, "pfs")


# --- Aalen-Johansen -------------------------------------------------------------------------------------------------

def test_cumulative_incidence_of_relapse_by_hand():
    """Five patients: relapse CD19+ at day 1, death without relapse at 2, censored at 3, relapse CD19- at 4,
    censored at 5 (plus one failed simulation that must be ignored).

    t=1: at risk 5, one relapse: CIF_rel = 1 * 1/5 = 0.2, all-cause S = 0.8.
    t=2: at risk 4, one death: CIF_rel stays 0.2, S = 0.8 * 3/4 = 0.6.
    t=3: censored; at risk drops to 2.
    t=4: at risk 2, one relapse: CIF_rel = 0.2 + 0.6 * 1/2 = 0.5, S = 0.3.
    So CIR(1.5) = 0.2, CIR(4.5) = 0.5; by phenotype at 4.5: CD19+ 0.2, CD19- 0.3, others 0.
    (The naive 1 - KM for relapse censoring deaths would give 1 - 0.8 * 1/2 = 0.6 at 4.5.)
    """
    patients = pd.DataFrame({
        "arm": ["A"] * 6,
        "status": ["ok"] * 5 + ["too_many_steps"],
        "relapse": pd.array([True, False, False, True, False, True], dtype="boolean"),
        "relapse_day": pd.array([1.0, None, None, 4.0, None, 0.5], dtype="Float64"),
        "relapse_phenotype": pd.array(["CD19+", None, None, "CD19-", None, "CD19+"], dtype="string"),
        "os_days": pd.array([10.0, 2.0, 3.0, 12.0, 5.0, 0.5], dtype="Float64"),
        "os_event": pd.array([False, True, False, False, False, True], dtype="boolean"),
    })
    table = cumulative_incidence_of_relapse(patients, [1.5, 4.5]).set_index(["phenotype", "day"])
    cif = table["cumulative_incidence"]
    assert cif[("any", 1.5)] == pytest.approx(0.2, abs=1e-12)
    assert cif[("any", 4.5)] == pytest.approx(0.5, abs=1e-12)
    assert cif[("CD19+", 4.5)] == pytest.approx(0.2, abs=1e-12)
    assert cif[("CD19-", 4.5)] == pytest.approx(0.3, abs=1e-12)
    assert cif[("CD19-", 1.5)] == pytest.approx(0.0, abs=1e-12)
    assert cif[("lineage-switch", 4.5)] == 0.0 and cif[("CD22-low", 4.5)] == 0.0
    assert (table["n"] == 5).all()
    assert table.loc[("any", 4.5), "events"] == 2
    nonzero = table[table["cumulative_incidence"] > 0]
    assert (nonzero["ci_low"] <= nonzero["cumulative_incidence"]).all()
    assert (nonzero["cumulative_incidence"] <= nonzero["ci_high"]).all()


# --- Cox ------------------------------------------------------------------------------------------------------------

def test_hazard_ratio_recovers_known_value():
    """Exponential times with hazards 1/500 (reference) and 2/500 per day (HR 2.0), n = 4000, uniform
    administrative censoring on (0, 1000) days, seed 20240607: the true HR lies in the 95% interval and the
    estimate is within 10% of it; the p-value is tiny."""
    rng = np.random.default_rng(20240607)
    n = 4000
    arm = np.where(np.arange(n) % 2 == 0, "control", "experimental")
    rate = np.where(arm == "control", 1 / 500, 2 / 500)
    event_time = rng.exponential(1 / rate)
    censor_time = rng.uniform(0, 1000, n)
    patients = pd.DataFrame({
        "arm": arm, "status": "ok",
        "os_days": pd.array(np.minimum(event_time, censor_time), dtype="Float64"),
        "os_event": pd.array(event_time <= censor_time, dtype="boolean"),
    })
    result = hazard_ratio(patients, "os", reference_arm="control")
    assert list(result["arm"]) == ["experimental"]
    row = result.iloc[0]
    assert row["ci_low"] < 2.0 < row["ci_high"]
    assert row["hazard_ratio"] == pytest.approx(2.0, rel=0.10)
    assert row["p_value"] < 1e-10
    inverse = hazard_ratio(patients, "os", reference_arm="experimental").iloc[0]
    assert inverse["hazard_ratio"] == pytest.approx(1 / row["hazard_ratio"], rel=1e-6)
    with pytest.raises(ValueError):
        hazard_ratio(patients, "os", reference_arm="placebo")


# --- Toxicity and CAR kinetics on hand-made tables ------------------------------------------------------------------

def test_toxicity_table_proportions():
    patients = pd.DataFrame({
        "arm": ["A"] * 4 + ["B"],
        "status": ["ok"] * 3 + ["too_many_steps", "ok"],
        "crs_max_grade": pd.array([0, 2, 2, 5, 1], dtype="Int64"),
        "icans_max_grade": pd.array([0, 0, 1, 5, None], dtype="Int64"),
        "sos_vod": pd.array([False, True, False, True, False], dtype="boolean"),
        "hsct": pd.array([True, True, False, True, False], dtype="boolean"),
    })
    table = toxicity_table(patients).set_index(["arm", "endpoint", "grade"])
    assert table.loc[("A", "crs", 2), "rate"] == pytest.approx(2 / 3)
    assert table.loc[("A", "crs", 5), "rate"] == 0.0
    assert table.loc[("A", "crs", 2), ["ci_low", "ci_high"]].tolist() == pytest.approx(wilson_interval(2, 3))
    a = toxicity_table(patients)
    a = a[a["arm"] == "A"]
    assert a.loc[a["endpoint"] == "crs", "rate"].sum() == pytest.approx(1.0)
    assert a.loc[a["endpoint"] == "sos_vod", "rate"].iloc[0] == pytest.approx(1 / 3)
    assert a.loc[a["endpoint"] == "hsct", "rate"].iloc[0] == pytest.approx(2 / 3)
    b = toxicity_table(patients)
    assert b.loc[(b["arm"] == "B") & (b["endpoint"] == "icans"), "n"].iloc[0] == 0  # grade missing: not counted


def test_car_kinetics_geometric_statistics():
    """Cmax 10, 100, 1000: geometric mean 100; responders (100, 1000) over the non-responder (10): GMR
    sqrt(100 * 1000)/10 = 31.62. Geometric CV = sqrt(exp(var(log)) - 1) with var(log) = (ln 10)^2."""
    patients = pd.DataFrame({
        "arm": ["car"] * 4 + ["chemo"],
        "status": ["ok"] * 3 + ["too_many_steps", "ok"],
        "car_infused": pd.array([True, True, True, True, False], dtype="boolean"),
        "best_response": pd.array(["NR", "CR", "CRi", "CR", "CR"], dtype="string"),
        "car_cmax_copies_per_ug": pd.array([10.0, 100.0, 1000.0, 1e9, None], dtype="Float64"),
        "car_auc0_28": pd.array([100.0, 1000.0, 10000.0, 1e9, None], dtype="Float64"),
        "car_tmax_days": pd.array([7.0, 10.0, 14.0, 1.0, None], dtype="Float64"),
    })
    table = car_kinetics(patients).set_index("parameter")
    assert set(table["arm"]) == {"car"}
    assert table.loc["cmax", "geometric_mean"] == pytest.approx(100.0)
    assert table.loc["auc0_28", "geometric_mean"] == pytest.approx(1000.0)
    assert table.loc["cmax", "geometric_cv"] == pytest.approx(np.sqrt(np.expm1(np.log(10) ** 2)))
    assert table.loc["cmax", "gmr_responder_vs_nonresponder"] == pytest.approx(np.sqrt(1e5) / 10)
    assert table.loc["tmax", "median"] == pytest.approx(10.0)
    assert table.loc["cmax", "n_responders"] == 2 and table.loc["cmax", "n_nonresponders"] == 1


# --- On a real simulated trial --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trial():
    protocol = leukosim.load_protocol("aall1331")
    return protocol, leukosim.simulate_trial(protocol, 60, seed=3).patients


def test_functions_on_simulated_trial(trial):
    protocol, patients = trial
    ok = patients[patients["status"] == "ok"]
    arms = {arm.name for arm in protocol.arms}

    rates = response_rates(patients, protocol)
    assert list(rates.columns) == ["arm", "endpoint", "assessment", "threshold", "n", "successes", "rate", "ci_low",
                                   "ci_high"]
    assert set(rates["arm"]) == arms and not rates[["rate", "ci_low", "ci_high"]].isna().any().any()
    assert ((rates["ci_low"] <= rates["rate"]) & (rates["rate"] <= rates["ci_high"])).all()
    first = rates[(rates["endpoint"] == "mrd_negative") & (rates["assessment"] == "end-of-cycle-1")].iloc[0]
    mrd = ok.loc[ok["arm"] == first["arm"], "mrd_end_of_cycle_1"].dropna()
    assert first["n"] == len(mrd) and first["successes"] == int((mrd < first["threshold"]).sum())

    for endpoint in ("efs", "os"):
        surv = survival_table(patients, endpoint)
        assert list(surv.columns) == ["arm", "statistic", "months", "days", "estimate", "ci_low", "ci_high", "n",
                                      "events", "n_at_risk"]
        assert set(surv["arm"]) == arms and not surv["estimate"].isna().any()
        landmarks = surv[surv["statistic"] == "survival"]
        assert len(landmarks) == 4 * len(arms) and landmarks["estimate"].between(0, 1).all()
        assert (landmarks["ci_low"] <= landmarks["estimate"]).all()
        hr = hazard_ratio(patients, endpoint, reference_arm="chemotherapy")
        assert list(hr["arm"]) == ["blinatumomab"] and hr["hazard_ratio"].gt(0).all()
        assert not hr[["hazard_ratio", "ci_low", "ci_high", "p_value"]].isna().any().any()

    cir = cumulative_incidence_of_relapse(patients, [180, 365, 730])
    assert set(cir["phenotype"]) == {"any", "CD19+", "CD19-", "CD22-low", "lineage-switch"}
    assert not cir["cumulative_incidence"].isna().any() and cir["cumulative_incidence"].between(0, 1).all()
    by_arm_day = cir[cir["phenotype"] != "any"].groupby(["arm", "day"])["cumulative_incidence"].sum()
    overall = cir[cir["phenotype"] == "any"].set_index(["arm", "day"])["cumulative_incidence"]
    pd.testing.assert_series_equal(by_arm_day.sort_index(), overall.sort_index(), check_names=False, atol=1e-9)

    tox = toxicity_table(patients)
    assert set(tox["endpoint"]) == {"crs", "icans", "sos_vod", "hsct"} and not tox["rate"].isna().any()
    assert len(tox) == len(arms) * 14

    car = car_kinetics(patients)  # no CAR arm in AALL1331: an empty table with the documented columns
    assert car.empty and "gmr_responder_vs_nonresponder" in car.columns


# --- randomisation after a run-in ---------------------------------------------------------------------------------

RUN_IN = """\
name: run-in
title: Reinduction, then randomisation of the patients in remission
population:
  disease: first_relapse
  age_years: {distribution: uniform, range: [3, 18]}
  male_fraction: 0.5
  marrow_blasts_percent: {distribution: uniform, range: [5, 100]}
  wbc_per_uL: {distribution: lognormal, median: 3000, cv: 1.0, range: [200, 100000]}
arms:
  - name: blinatumomab
    phases:
      - name: block-1
        days: 35
        drugs:
          - {drug: chemotherapy, regimen: intensive_block, days: [1, 28]}
        assess:
          - {name: end-of-block-1, day: 35}
        then:
          - if: {response: NR}
            go: off_protocol
          - else: cycle-1
      - name: cycle-1
        days: 42
        randomization: true
        drugs:
          - {drug: blinatumomab, dose: 15, unit: ug/m2/day, infusion: continuous, days: [1, 28]}
  - name: chemotherapy
    phases:
      - name: block-1
        days: 35
        drugs:
          - {drug: chemotherapy, regimen: intensive_block, days: [1, 28]}
        assess:
          - {name: end-of-block-1, day: 35}
        then:
          - if: {response: NR}
            go: off_protocol
          - else: block-2
      - name: block-2
        days: 35
        randomization: true
        drugs:
          - {drug: chemotherapy, regimen: intensive_block, days: [1, 21]}
follow_up_days: 365
endpoints:
  efs: {origin: randomization}
  os: {origin: randomization}
  response: {assessments: [end-of-block-1]}
"""


def test_analysed_patients_are_randomised_and_solved():
    patients = pd.DataFrame({"patient_id": [0, 1, 2, 3], "status": ["ok", "too_many_steps", "ok", "ok"],
                             "randomized": pd.array([True, pd.NA, False, True], dtype="boolean")})
    assert analysed(patients)["patient_id"].tolist() == [0, 3]
    assert analysed(patients.drop(columns="randomized"))["patient_id"].tolist() == [0, 2, 3]


def test_patients_are_randomised_after_the_run_in_and_analysed_from_there():
    """Patients in remission after block 1 are randomised on day 35 and analysed from it; those off protocol
    (no remission) or dead before it are neither randomised nor analysed, and the summary counts them."""
    protocol = parse_protocol(RUN_IN)
    run = leukosim.simulate_trial(protocol, 400, seed=3, trajectory_patients=0)
    patients = run.patients
    assert patients["status"].eq("ok").all()
    randomized = patients["randomized"].to_numpy(bool)
    remission = patients["response_end_of_block_1"].isin(["CR", "CRi"]).to_numpy(bool)
    assert 0 < randomized.sum() < len(patients)  # the run-in loses some patients and keeps others
    assert not (randomized & ~remission).any()
    assert patients.loc[randomized, "efs_origin_day"].eq(35.0).all()
    assert (patients.loc[randomized, "os_days"] <= 365.0 + 1e-9).all()  # follow-up runs from randomisation
    events = run.events
    days = events[events["event"] == "randomization"].set_index("patient_id")["day"]
    assert sorted(days.index) == sorted(patients.loc[randomized, "patient_id"]) and days.eq(35.0).all()
    summary = arm_summary(protocol, patients).set_index(["arm", "endpoint"])
    for arm, group in patients.groupby("arm"):
        assert summary.loc[(arm, "patients"), "value"] == len(group)
        assert summary.loc[(arm, "randomized"), "value"] == group["randomized"].sum()
    rates = response_rates(patients, protocol)
    assert rates.loc[rates["endpoint"] == "cr_or_cri", "n"].sum() == randomized.sum()  # among the randomised only
