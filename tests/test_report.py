"""The run directory's summary.json, the published-target comparison and the HTML report, including a check in
headless Chromium that every figure renders."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import leukosim
from leukosim.endpoints.outcomes import mrd_column, response_column
from leukosim.endpoints.targets import compare_targets, evaluate_target, group_members
from leukosim.io.rundir import SUMMARY, TRAJECTORIES, read_run, write_run
from leukosim.protocol.load import bundled_protocols, load_protocol
from leukosim.protocol.schema import Target
from leukosim.report import REPORT, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: .ci/run sets this so that a missing browser fails the run instead of skipping the browser test
BROWSER_REQUIRED = os.environ.get("LEUKOSIM_BROWSER_TESTS") == "required"


@pytest.fixture(scope="module")
def aall1331_run(tmp_path_factory: pytest.TempPathFactory):
    result = leukosim.simulate_trial("aall1331", 160, seed=3, trajectory_patients=40)
    return write_run(result, tmp_path_factory.mktemp("aall1331")), result


@pytest.fixture(scope="module")
def eliana_run(tmp_path_factory: pytest.TempPathFactory):
    result = leukosim.simulate_trial("eliana", 80, seed=3, trajectory_patients=30)
    return write_run(result, tmp_path_factory.mktemp("eliana")), result


def test_trajectories_are_recorded_for_the_lowest_patient_ids(aall1331_run) -> None:
    run_dir, result = aall1331_run
    trajectories = pd.read_parquet(run_dir / TRAJECTORIES)
    assert set(trajectories["patient_id"]) == set(range(40))
    assert result.manifest()["trajectory_patients"] == 40
    first = trajectories[trajectories["patient_id"] == 0]
    assert first["day"].is_monotonic_increasing and first["day"].iloc[0] == 0.0
    # blinatumomab is given in one arm only
    by_arm = trajectories.groupby("arm")["blinatumomab_ng_per_mL"].max()
    assert by_arm["chemotherapy"] == 0.0 and by_arm["blinatumomab"] > 0.0


def test_no_trajectories_is_an_empty_frame_of_the_same_columns_and_types(aall1331_run) -> None:
    _, result = aall1331_run
    none = leukosim.simulate_trial("aall1331", 5, seed=3, trajectory_patients=0).trajectories
    assert none.empty
    pd.testing.assert_series_equal(none.dtypes, result.trajectories.dtypes)


def test_recording_leaves_unrecorded_patients_unchanged(aall1331_run) -> None:
    _, result = aall1331_run
    plain = leukosim.simulate_trial("aall1331", 160, seed=3, trajectory_patients=0)
    later = result.patients["patient_id"] >= 40
    pd.testing.assert_frame_equal(result.patients[later].reset_index(drop=True),
                                  plain.patients[plain.patients["patient_id"] >= 40].reset_index(drop=True))


def test_summary_json_holds_every_table_and_is_strict_json(aall1331_run) -> None:
    run_dir, result = aall1331_run
    text = (run_dir / SUMMARY).read_text()
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    tables = document["tables"]
    for name in ("main", "baseline", "response", "efs", "os", "hazard_ratio_efs", "hazard_ratio_os",
                 "relapse_incidence", "toxicity", "targets"):
        assert tables[name], name
    assert tables["hazard_ratio_efs"][0]["reference_arm"] == "chemotherapy"  # the last arm by default
    assert len(tables["targets"]) == len(result.protocol.targets)
    statistics = result.statistics()
    assert tables["efs"][0]["estimate"] == pytest.approx(statistics["efs"]["estimate"].iloc[0])


def test_target_values_follow_their_definitions(aall1331_run) -> None:
    _, result = aall1331_run
    protocol, patients = result.protocol, result.patients
    table = compare_targets(protocol, patients)
    ok = patients[patients["status"] == "ok"]
    for target, row in zip(protocol.targets, table.itertuples()):
        arm = ok[ok["arm"] == target.arm]
        if target.endpoint == "mrd_negative":
            mrd = arm[f"mrd_{target.assessment.replace('-', '_')}"].astype("Float64").fillna(1.0)
            assert row.simulated == pytest.approx(float((mrd < 1e-4).mean()))
        elif target.endpoint == "hsct":
            assert row.simulated == pytest.approx(float(arm["hsct"].astype(bool).mean()))
        elif target.endpoint == "first_event_relapse":
            assert row.simulated == pytest.approx(float((arm["efs_event_type"].fillna("") == "relapse").mean()))
        assert row.simulated_ci_low <= row.simulated <= row.simulated_ci_high
        inside = row.reference_low <= row.simulated <= row.reference_high
        assert row.hit == inside


def test_subgroups_partition_the_evaluable_patients() -> None:
    result = leukosim.simulate_trial("aieop-bfm-2000", 150, seed=2, trajectory_patients=0)
    protocol, patients = result.protocol, result.patients
    ok = patients[patients["status"] == "ok"]
    evaluable = group_members(protocol, ok, "mrd-evaluable")
    names = ("mrd-sr", "mrd-ir", "mrd-hr")
    groups = [group_members(protocol, ok, g) for g in names]
    assert np.array_equal(np.sum(groups, axis=0)[evaluable], np.ones(evaluable.sum()))  # each in exactly one
    shares = [t for t in protocol.targets if t.endpoint == "group_share" and t.group in names]
    total = sum(evaluate_target(t, protocol, patients)[0] for t in shares)
    assert len(shares) == 3 and total == pytest.approx(1.0)


def test_median_not_reached_is_a_miss() -> None:
    protocol = load_protocol("aieop-bfm-2000")
    protocol = protocol.model_copy(update={"targets": [
        Target(endpoint="median_os", arm="bfm", value=200.0, ci=(100.0, 300.0), source="test")]})
    result = leukosim.simulate_trial(protocol, 60, seed=1, trajectory_patients=0)
    row = compare_targets(protocol, result.patients).iloc[0]
    assert np.isinf(row["simulated"])  # most children with standard-risk ALL survive: median not reached ...
    assert row["hit"] == False  # noqa: E712 (... which is above any published median: a miss)


def test_report_is_self_contained_and_complete(aall1331_run) -> None:
    run_dir, result = aall1331_run
    path = write_report(run_dir)
    assert path == run_dir / REPORT
    text = path.read_text(encoding="utf-8")
    assert "Research use only" in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the report must not load anything remotely"
    for heading in ("Protocol", "Cohort (Table 1)", "Hazard ratio, EFS", "Response and MRD", "Published targets",
                    "Manifest"):
        assert f">{heading}<" in text, heading
    for target in result.protocol.targets:
        assert target.source.split()[0] in text
    assert text.count("<img ") == 7  # 2 KM, MRD, toxicity, blinatumomab, swimmer, forest (no CAR-T here)


def test_report_of_a_car_t_trial_has_the_kinetics_figure(eliana_run) -> None:
    run_dir, _ = eliana_run
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "Median and 10-90th percentile band of the recorded infused patients." in text
    assert text.count("<img ") == 7  # 2 KM, MRD, toxicity, CAR-T, swimmer, forest (no drug concentrations)


def test_report_command_rejects_an_incomplete_run(tmp_path) -> None:
    from typer.testing import CliRunner

    from leukosim.cli import app

    outcome = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "incomplete or not a leukosim run directory" in outcome.output


def test_read_run_round_trips_the_protocol(aall1331_run) -> None:
    run_dir, result = aall1331_run
    assert read_run(run_dir).protocol == result.protocol


@pytest.mark.skipif(not CHROMIUM and not BROWSER_REQUIRED, reason="Chromium not installed (Debian: chromium)")
def test_every_figure_renders_in_headless_chromium(aall1331_run, eliana_run) -> None:
    assert CHROMIUM, "LEUKOSIM_BROWSER_TESTS=required but no chromium on PATH"
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            for run_dir, _ in (aall1331_run, eliana_run):
                page = browser.new_page()
                page.goto((write_report(run_dir)).as_uri())
                images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth,"
                                       " i.naturalHeight, i.getBoundingClientRect().width])")
                assert len(images) == 7
                for complete, width, height, shown in images:
                    assert complete and width > 100 and height > 100 and shown > 100
                assert "Research use only" in page.inner_text("body")
                page.close()
        finally:
            browser.close()


# --------------------------------------------------------------------------------------------- targets as data

def _kinetics_table() -> pd.DataFrame:
    """Six infused patients: four responders, two non-responders, one failed patient that must be ignored."""
    return pd.DataFrame({
        "status": ["ok"] * 6 + ["failed"],
        "arm": ["tisagenlecleucel"] * 7,
        "best_response": ["CR", "CR", "CRi", "CR", "NR", "NR", "CR"],
        "car_infused": [True] * 7,
        "car_cmax_copies_per_ug": [1000.0, 4000.0, 2000.0, 8000.0, 500.0, 2000.0, 1.0e9],
        "car_auc0_28": [1.0e4, 4.0e4, 2.0e4, 8.0e4, 1.0e3, 4.0e3, 1.0],
        "car_tmax_days": [7.0, 10.0, 14.0, 7.0, 21.0, 28.0, 1.0],
        "crs_max_grade": [0, 1, 2, 3, 1, 1, 4],
        "crs_onset_day": [np.nan, 1.0, 2.0, 3.0, 5.0, 8.0, 0.0],
        "tocilizumab_doses": [0, 0, 1, 2, 0, 0, 3],
        "corticosteroid_courses": [0, 0, 0, 1, 0, 0, 1],
        "blinatumomab_css_max_ng_per_mL": [0.0, 0.4, 0.5, 0.6, 0.7, 0.0, 9.0],
        "inotuzumab_cmax_ng_per_mL": [0.0] * 7,
        "relapse": [False, True, True, False, False, True, True],
        "relapse_day": [np.nan, 100.0, 400.0, np.nan, np.nan, 50.0, 1.0],
    })


def test_kinetics_and_exposure_targets_match_hand_computation() -> None:
    """Geometric means with t intervals on the log scale, the responder geometric-mean ratio with a Welch
    interval, means with t intervals, the CRS-onset median with its order-statistic interval, CR only and the
    crude relapse share by a day, each computed by hand on a six-patient table."""
    from scipy import stats

    protocol = load_protocol("eliana")
    table = _kinetics_table()
    arm = "tisagenlecleucel"

    def value(endpoint: str, **extra) -> tuple:
        return evaluate_target(Target(endpoint=endpoint, arm=arm, value=1.0, source="test", **extra), protocol, table)

    cmax = np.log([1000.0, 4000.0, 2000.0, 8000.0, 500.0, 2000.0])
    half = stats.t.ppf(0.975, 5) * cmax.std(ddof=1) / np.sqrt(6)
    got = value("car_cmax_geomean")
    assert got[0] == pytest.approx(np.exp(cmax.mean())) and got[3] == 6
    assert got[1:3] == pytest.approx((np.exp(cmax.mean() - half), np.exp(cmax.mean() + half)))
    assert value("car_tmax_geomean")[0] == pytest.approx(np.exp(np.log([7, 10, 14, 7, 21, 28]).mean()))

    responders, others = np.log([1.0e4, 4.0e4, 2.0e4, 8.0e4]), np.log([1.0e3, 4.0e3])
    va, vb = responders.var(ddof=1) / 4, others.var(ddof=1) / 2
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 1)
    difference, half = responders.mean() - others.mean(), stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    got = value("car_auc28_gmr_responders")
    assert got[0] == pytest.approx(np.exp(difference)) == pytest.approx(10.0 * np.sqrt(2.0))  # 28284 / 2000
    assert got[1:3] == pytest.approx((np.exp(difference - half), np.exp(difference + half)))

    css = np.array([0.4, 0.5, 0.6, 0.7])  # patients given blinatumomab (positive concentration) only
    half = stats.t.ppf(0.975, 3) * css.std(ddof=1) / 2
    assert value("blinatumomab_css_mean")[:4] == pytest.approx((0.55, 0.55 - half, 0.55 + half, 4))
    assert np.isnan(value("inotuzumab_cmax_mean")[0])  # nobody given inotuzumab

    # onset among the 5 patients with CRS: 1, 2, 3, 5, 8; binom.ppf(0.025, 5, 0.5) = 1 -> ranks 1 and 5
    assert value("crs_onset_median")[:4] == pytest.approx((3.0, 1.0, 8.0, 5))
    assert value("cr")[0] == pytest.approx(3 / 6)
    assert value("relapse", timepoint_days=365.0)[0] == pytest.approx(2 / 6)  # days 100 and 50, not 400
    # among the 5 patients with CRS (grades 1, 2, 3, 1, 1): grade >= 3 one, tocilizumab two, corticosteroids one
    assert value("crs_grade_3_plus", among="with_crs")[::3] == pytest.approx((1 / 5, 5))
    assert value("tocilizumab", among="with_crs")[::3] == pytest.approx((2 / 5, 5))
    assert value("corticosteroids")[::3] == pytest.approx((1 / 6, 6))
    assert value("relapse")[0] == pytest.approx(3 / 6)


def test_reference_intervals_of_quantities() -> None:
    """log_sd and n: lognormal interval of a geometric mean; sd and n: t interval of a mean; a quantity without
    a spread has no interval (never a binomial one); a missing simulated value carries its reason."""
    from scipy import stats

    protocol = load_protocol("eliana")
    targets = [
        Target(endpoint="car_cmax_geomean", arm="tisagenlecleucel", value=24000.0, n=90, log_sd=0.806, source="t"),
        Target(endpoint="blinatumomab_css_mean", arm="tisagenlecleucel", value=0.5, n=10, sd=0.2, source="t"),
        Target(endpoint="inotuzumab_cmax_mean", arm="tisagenlecleucel", value=308.0, n=25, source="t",
               calibrate=False),
    ]
    table = compare_targets(protocol.model_copy(update={"targets": targets}), _kinetics_table())
    half = stats.t.ppf(0.975, 89) * 0.806 / np.sqrt(90)
    assert table.loc[0, ["reference_low", "reference_high"]].tolist() == pytest.approx(
        [24000.0 * np.exp(-half), 24000.0 * np.exp(half)])
    half = stats.t.ppf(0.975, 9) * 0.2 / np.sqrt(10)
    assert table.loc[1, ["reference_low", "reference_high"]].tolist() == pytest.approx([0.5 - half, 0.5 + half])
    assert table.loc[2, "reference_kind"] == "none" and pd.isna(table.loc[2, "hit"])
    assert table.loc[2, "na_reason"] == "no evaluable patients"  # nobody was given inotuzumab
    assert table["calibrate"].tolist() == [True, True, False]


def test_target_values_are_validated_by_kind() -> None:
    Target(endpoint="car_cmax_geomean", value=24000.0, n=90, log_sd=0.8, source="t")  # a quantity may exceed 1
    with pytest.raises(ValueError, match="proportion"):
        Target(endpoint="cr_or_cri", value=24.0, source="t")
    with pytest.raises(ValueError, match="value > 0"):
        Target(endpoint="car_tmax_geomean", value=0.0, source="t")
    with pytest.raises(ValueError, match="sd only for"):
        Target(endpoint="os", timepoint_days=365, value=0.5, sd=0.1, source="t")
    with pytest.raises(ValueError, match="not both"):
        Target(endpoint="inotuzumab_cmax_mean", value=308.0, sd=1.0, log_sd=0.5, source="t")
    with pytest.raises(ValueError, match="calibrate: false with out_of_sample: true"):
        Target(endpoint="cr_or_cri", value=0.8, n=50, out_of_sample=True, source="t")


@pytest.mark.parametrize("name", bundled_protocols())
def test_every_bundled_target_evaluates(name: str) -> None:
    """50 patients simulate without failures, and every target has a simulated value (a median may be not
    reached: +inf) or an explicit reason why not."""
    result = leukosim.simulate_trial(name, 50, seed=5, trajectory_patients=0)
    assert (result.patients["status"] == "ok").all()
    table = compare_targets(result.protocol, result.patients)
    assert len(table) == len(result.protocol.targets)
    missing = table["simulated"].isna()
    assert table.loc[missing, "na_reason"].notna().all(), table.loc[missing, ["target", "na_reason"]]
    assert table.loc[~missing, "na_reason"].isna().all()
    assert table["calibrate"].dtype == bool


UNREACHED_PROTOCOL = """
name: unreached-test
title: an assessment in a branch no patient can take (prior transplant, in a population without one)
population:
  disease: first_relapse
  age_years: {distribution: fixed, value: 10}
  male_fraction: 0.5
  marrow_blasts_percent: {distribution: fixed, value: 50}
  wbc_per_uL: {distribution: fixed, value: 5000}
arms:
  - name: chemotherapy
    phases:
      - name: block
        days: 28
        drugs:
          - {drug: chemotherapy, regimen: induction, days: [1, 28]}
        assess:
          - {name: day-28, day: 28}
        then:
          - if: {prior_hsct: true}
            go: second-block
          - else: off_protocol
      - name: second-block
        days: 28
        drugs:
          - {drug: chemotherapy, regimen: induction, days: [1, 28]}
        assess:
          - {name: end-of-second-block, day: 28}
targets:
  - {endpoint: mrd_negative, assessment: end-of-second-block, value: 0.5, n: 10, source: test}
follow_up_days: 60
"""


def test_every_assessment_has_its_columns_even_if_nobody_reached_it(tmp_path) -> None:
    """An assessment nobody reached still has its MRD, response and blast columns, all missing, and a target on it
    evaluates (no KeyError)."""
    path = tmp_path / "unreached.yaml"
    path.write_text(UNREACHED_PROTOCOL)
    protocol = leukosim.load_protocol(path)
    patients = leukosim.simulate_trial(protocol, 5, seed=1, trajectory_patients=0).patients
    reached, unreached = "day-28", "end-of-second-block"
    assert patients[mrd_column(reached)].notna().all()
    for column in (mrd_column(unreached), response_column(unreached), "blasts_percent_end_of_second_block"):
        assert patients[column].isna().all()
    assert len(compare_targets(protocol, patients)) == len(protocol.targets)  # no KeyError


def test_aall1621_cycle_1_mrd_target_counts_the_cycle_1_responders_only() -> None:
    """S57's 18 of 27 is among the patients in CR/CRi after cycle 1: a patient who responds only after cycle 2
    (MRD-positive at cycle 1) is not in the denominator, as it would be among the best responders."""
    protocol = load_protocol("aall1621")
    target = next(t for t in protocol.targets if t.endpoint == "mrd_negative" and t.assessment == "end-of-cycle-1")
    table = pd.DataFrame({
        "patient_id": [0, 1, 2, 3], "arm": "inotuzumab", "status": "ok",
        "best_response": ["CR", "CRi", "CR", "NR"],
        response_column("end-of-cycle-1"): ["CR", "CRi", "NR", "NR"],
        mrd_column("end-of-cycle-1"): [1.0e-5, 1.0e-3, 0.2, 0.5],
        response_column("end-of-cycle-2"): ["CR", "CRi", "CR", "NR"],
        mrd_column("end-of-cycle-2"): [1.0e-6, 1.0e-3, 1.0e-5, 0.6],
    })
    value, _, _, n = evaluate_target(target, protocol, table)
    assert (value, n) == (0.5, 2)


def test_car_persistence_is_the_geometric_mean_of_quantifiable_month_3_levels_over_cmax() -> None:
    """Transgene at the named assessment over Cmax, geometric mean over patients whose level is quantifiable
    (>= the qPCR LLOQ): a level below the LLOQ, a patient never infused and a failed patient are left out."""
    from scipy import stats

    protocol = load_protocol("eliana")
    table = _kinetics_table()
    table["car_copies_month_3"] = [10.0, 80.0, 100.0, 400.0, 0.0, np.nan, 1.0e9]
    target = Target(endpoint="car_persistence_geomean", arm="tisagenlecleucel", assessment="month-3", value=0.01,
                    source="test")
    ratios = np.log([80.0 / 4000.0, 100.0 / 2000.0, 400.0 / 8000.0])  # 10 copies/ug is below the LLOQ (50)
    half = stats.t.ppf(0.975, 2) * ratios.std(ddof=1) / np.sqrt(3)
    got = evaluate_target(target, protocol, table)
    assert got[0] == pytest.approx(np.exp(ratios.mean())) and got[3] == 3
    assert got[1:3] == pytest.approx((np.exp(ratios.mean() - half), np.exp(ratios.mean() + half)))
    with pytest.raises(ValueError, match="assessment"):
        Target(endpoint="car_persistence_geomean", value=0.01, source="test")


def test_transgene_is_reported_at_assessments_of_car_t_arms_only() -> None:
    """ELIANA: a blood transgene level at day 28 and month 3 for every infused patient that reached them, and
    equal to the engine's trajectory record on that day; a chemotherapy protocol has no such column."""
    result = leukosim.simulate_trial("eliana", 20, seed=3, trajectory_patients=20)
    patients = result.patients
    assert {"car_copies_day_28", "car_copies_month_3"} <= set(patients.columns)
    reached = patients["mrd_month_3"].notna()
    assert reached.any() and (patients.loc[reached, "car_copies_month_3"] > 0).all()
    first = patients.index[reached][0]
    month_3 = patients.loc[first, "efs_origin_day"] + 91.0  # day 91 after infusion
    trajectory = result.trajectories
    record = trajectory.loc[(trajectory["patient_id"] == first) & (trajectory["day"] == month_3), "car_copies_per_ug"]
    assert float(patients.loc[first, "car_copies_month_3"]) == pytest.approx(float(record.iloc[0]), rel=1e-6)
    chemo = leukosim.simulate_trial("aieop-bfm-2000", 5, seed=3).patients
    assert not any(column.startswith("car_copies") for column in chemo.columns)
