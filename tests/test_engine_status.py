"""Errors as data: a virtual patient whose integration fails gets a failure status and null outcomes, and
never aborts the run or changes any other patient; every outcome of an ok patient is well formed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from leukosim import default_parameters, load_protocol, simulate_trial
from leukosim.endpoints.outcomes import RELAPSE_PHENOTYPES, event_table, patient_table
from leukosim.engine.simulate import simulate_arm
from leukosim.io.rundir import read_patients, write_run
from leukosim.model.layout import C_STATUS, STATUS_NAMES, STATUS_OK
from leukosim.model.registry import INDEX, load_parameter_set
from leukosim.population.covariates import draw_covariates
from leukosim.population.individual import individual_parameters
from leukosim.protocol.load import parse_protocol

BUNDLED = ["aall1331", "aall1621", "aieop-bfm-2000", "blina-rr-peds", "eliana"]
FAILURES = set(STATUS_NAMES) - {"ok"}
#: Columns known before any simulation (identity and baseline covariates) and solver diagnostics; every
#: other column is an outcome and must be null for a failed patient.
BASELINE = {"patient_id", "arm", "status", "age_years", "sex", "height_cm", "weight_kg", "bsa_m2",
            "marrow_blasts_percent", "wbc_per_uL", "prior_hsct", "late_relapse", "solver_steps"}
RESPONSES = {"CR", "CRi", "NR", "NE"}

SEED = 5
N = 10
BAD = 3  # the patient whose parameters are corrupted
PARAMETERS = default_parameters()
ELIANA = load_protocol("eliana")
ARM = ELIANA.arms[0]
COVARIATES = draw_covariates(ELIANA.population, SEED, np.arange(N, dtype=np.int64), PARAMETERS)
P = individual_parameters(PARAMETERS, COVARIATES, SEED)
OTHERS = [i for i in range(N) if i != BAD]


def corrupted(name: str, value: float) -> np.ndarray:
    p = P.copy()
    p[BAD, INDEX[name]] = value
    return p


def by_patient(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("patient_id", kind="stable").reset_index(drop=True)


CORRUPTIONS = [
    pytest.param("leukemia_net_growth", np.nan, id="nan-growth-rate"),
    pytest.param("car_expansion_rate", np.inf, id="inf-car-expansion-rate"),
]


@pytest.mark.parametrize(("name", "value"), CORRUPTIONS)
def test_failing_patient_is_reported_and_isolated(name: str, value: float) -> None:
    course = simulate_arm(ELIANA, ARM, COVARIATES, corrupted(name, value), PARAMETERS, SEED)  # must not raise
    table = patient_table(ELIANA, course)

    assert course.context[BAD, C_STATUS] != STATUS_OK
    assert table.loc[BAD, "patient_id"] == BAD
    assert table.loc[BAD, "status"] in FAILURES
    outcomes = [column for column in table.columns if column not in BASELINE]
    assert {"best_response", "efs_days", "efs_event", "os_days", "os_event", "relapse_phenotype",
            "mrd_day_28", "crs_max_grade"} <= set(outcomes)
    assert table.loc[BAD, outcomes].isna().all(), table.loc[BAD, outcomes][table.loc[BAD, outcomes].notna()]

    # the other nine are exactly what they are in a run without the corrupted patient
    alone = simulate_arm(ELIANA, ARM, COVARIATES.take(np.array(OTHERS)), P[OTHERS], PARAMETERS, SEED)
    alone_table = patient_table(ELIANA, alone)
    assert (alone_table["status"] == "ok").all()
    assert (table.loc[OTHERS, "status"] == "ok").all()
    # values bitwise equal; column types are the subject of the next test
    pd.testing.assert_frame_equal(table.loc[OTHERS].reset_index(drop=True), alone_table, check_dtype=False,
                                  check_exact=True)
    np.testing.assert_array_equal(course.state[OTHERS], alone.state)
    np.testing.assert_array_equal(course.context[OTHERS], alone.context)
    events = event_table(course)
    pd.testing.assert_frame_equal(by_patient(events[events["patient_id"] != BAD]),
                                  by_patient(event_table(alone)), check_exact=True)


def test_failure_does_not_change_column_types() -> None:
    clean = patient_table(ELIANA, simulate_arm(ELIANA, ARM, COVARIATES, P, PARAMETERS, SEED))
    p = corrupted("leukemia_net_growth", np.nan)
    failed = patient_table(ELIANA, simulate_arm(ELIANA, ARM, COVARIATES, p, PARAMETERS, SEED))
    assert (failed["status"] != "ok").sum() == 1
    changed = {column: (str(clean[column].dtype), str(failed[column].dtype)) for column in clean.columns
               if clean[column].dtype != failed[column].dtype}
    assert not changed


def test_run_where_every_patient_fails_completes(tmp_path: Path) -> None:
    broken = PARAMETERS.replace(car_expansion_rate=float("nan"))
    result = simulate_trial("eliana", 4, seed=SEED, parameters=broken)

    patients = result.patients
    assert patients["patient_id"].tolist() == [0, 1, 2, 3]
    assert set(patients["status"]) <= FAILURES
    assert patients["efs_days"].isna().all() and patients["best_response"].isna().all()
    summary = result.summary().set_index("endpoint")["value"]
    assert summary["patients"] == 4 and summary["failed_simulations"] == 4
    write_run(result, tmp_path / "run")
    assert set(read_patients(tmp_path / "run")["status"]) <= FAILURES


def test_event_location_always_terminates(tmp_path: Path) -> None:
    """Patient 2 of aall1331 with seed 11 stalls at its CD19-negative clone's extinction event (day ~229).
    The engine cannot be interrupted in-process, so the run goes to a child process with a time limit."""
    code = textwrap.dedent("""
        import leukosim
        result = leukosim.simulate_trial("aall1331", 3, seed=11)
        print(len(result.patients))
    """)
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail("a 3-patient run did not finish in 25 s (normally about 3 s)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_default_parameters_give_no_solver_failure() -> None:
    """Patient 2 of aall1621 with seed 1: transplant on day 56 moves ln K of the bulk clone from -5.8 to 0.9
    (threshold -0.4); the clone decays to 1e-20 cells still flagged alive and is resampled on day 392."""
    patients = simulate_trial("aall1621", 3, seed=1).patients
    assert (patients["status"] == "ok").all(), patients[["patient_id", "status", "solver_steps"]]


def test_a_transplant_after_deep_aplasia_solves() -> None:
    """calibrated-0.7's intensive-block marrow kill (0.63/day) leaves the marrow at ~1e-9 of normal by the
    transplant on day 70; conditioning then emptied the B-precursor compartment and its refill was too stiff to
    solve (step-size underflow in 48 of 200 patients). The graft's B precursors keep it solvable."""
    values = load_parameter_set("calibrated-0.7")
    patients = simulate_trial("aall1331", 200, seed=0, parameters=values, trajectory_patients=0).patients
    transplanted = patients[patients["hsct"].astype(bool)]
    assert len(transplanted) > 20
    assert (patients["status"] == "ok").all(), patients["status"].value_counts()


# --------------------------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize("protocol", BUNDLED)
def test_outcomes_of_ok_patients_are_well_formed(protocol: str) -> None:
    spec = load_protocol(protocol)
    patients = simulate_trial(spec, 60, seed=3).patients
    assert len(patients) == 60 and patients["patient_id"].is_unique
    assert set(patients["status"]) <= FAILURES | {"ok"}
    ok = patients[patients["status"] == "ok"]
    assert len(ok) >= 54, patients["status"].value_counts()  # at most 10% solver failures

    efs, os_ = ok["efs_days"].to_numpy(float), ok["os_days"].to_numpy(float)
    assert np.isfinite(efs).all() and np.isfinite(os_).all()
    assert (efs >= 0.0).all() and (os_ >= 0.0).all()
    assert (efs <= os_ + 1e-9).all()
    assert (os_ <= spec.follow_up_days + 1e-9).all()

    for flag in ("efs_event", "os_event", "relapse", "hsct"):
        assert all(isinstance(value, (bool, np.bool_)) for value in ok[flag]), flag
    events = ok["efs_event"].astype(bool)
    assert ok.loc[events, "efs_event_type"].isin(spec.endpoints.efs.events).all()
    assert ok.loc[~events, "efs_event_type"].isna().all()
    assert (ok.loc[~events, "efs_days"] > 0.0).all()
    deaths = ok["os_event"].astype(bool)
    assert ok.loc[deaths, "death_cause"].notna().all() and ok.loc[~deaths, "death_cause"].isna().all()
    survivors = ok.loc[~deaths, "os_days"].to_numpy(float)
    np.testing.assert_allclose(survivors, spec.follow_up_days, rtol=0, atol=1e-9)  # censored at the horizon

    assert set(ok["best_response"]) <= RESPONSES
    for grade in ("crs_max_grade", "icans_max_grade"):
        values = ok[grade].to_numpy(float)
        assert np.isfinite(values).all() and (values == np.round(values)).all(), grade
        assert ((values >= 0) & (values <= 5)).all(), grade

    relapsed = ok["relapse"].astype(bool)
    assert ok.loc[~relapsed, "relapse_phenotype"].isna().all()
    assert ok.loc[relapsed, "relapse_phenotype"].isin(RELAPSE_PHENOTYPES).all()
    by_relapse = ok[events & (ok["efs_event_type"] == "relapse")]
    assert (by_relapse["efs_days"] == by_relapse["relapse_day"]).all()
    assert by_relapse["relapse"].astype(bool).all()

    for column in (c for c in ok.columns if c.startswith("mrd_")):
        mrd = ok[column].dropna().to_numpy(float)
        assert ((mrd >= 0.0) & (mrd <= 1.0)).all(), column


def test_os_is_counted_from_its_own_origin() -> None:
    """ELIANA counts EFS and OS from infusion (phase day 1 of the infusion phase, day 7 after enrollment);
    the same protocol with OS counted from enrollment must give the deaths 7 more days of OS, same EFS."""
    data = yaml.safe_load(resources.files("leukosim").joinpath("protocols", "eliana.yaml").read_text("utf-8"))
    data["endpoints"]["os"]["origin"] = "enrollment"
    from_enrollment = parse_protocol(yaml.safe_dump(data, sort_keys=False), "eliana-os-from-enrollment.yaml")
    infusion = simulate_trial(ELIANA, 10, seed=3).patients
    enrollment = simulate_trial(from_enrollment, 10, seed=3).patients
    assert (infusion["status"] == "ok").all()
    # patients who die before infusion (lymphodepletion) have no infusion origin: only the infused compare
    died = infusion["os_event"].to_numpy(bool) & infusion["car_infused"].to_numpy(bool)
    assert died.any()
    pd.testing.assert_series_equal(enrollment["efs_days"], infusion["efs_days"], check_exact=True)
    np.testing.assert_allclose(enrollment["os_days"].to_numpy(float)[died],
                               infusion["os_days"].to_numpy(float)[died] + 7.0, rtol=0, atol=1e-9)
