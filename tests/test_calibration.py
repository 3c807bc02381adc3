"""Calibration (objective, CMA-ES fit, parameter-set files) and validation (table, hit fractions, CLI)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import leukosim
from leukosim.calibration import CalibrationSettings, calibrate, hit_fractions, validation_records, validation_table
from leukosim.calibration.fit import (
    SettingsError, calibration_protocols, recorded_objective, settings_from_file, write_parameter_set,
)
from leukosim.calibration.objective import (
    FAILED_PATIENT_LOSS, HUBER_Z, CalibrationObjective, huber_weights, standardised_residuals, target_loss,
)
from leukosim.calibration.validate import cohort_size, failed_patients
from leukosim.cli import app
from leukosim.model.registry import (
    DEFAULT, LITERATURE, PARAMETERS, ParameterSetError, literature_parameters, load_parameter_set,
    shipped_parameter_sets,
)

SMALL = CalibrationSettings(name="tiny", n_patients=40, protocols=("aall1621", "eliana"),
                            parameters=("ino_kill_max", "car_expansion_rate"), max_evaluations=8, start=LITERATURE,
                            cohort_oversampling=0.0)


def test_standardised_residual_of_a_proportion_by_hand() -> None:
    table = pd.DataFrame({"published": [0.5, 0.5], "reference_low": [0.4, np.nan], "reference_high": [0.6, np.nan],
                          "simulated": [0.7, 0.7], "simulated_ci_low": [0.65, 0.65],
                          "simulated_ci_high": [0.75, 0.75]})
    z = standardised_residuals(table, horizon_days=365.0)
    expected = 0.2 / np.hypot(0.1 / 1.959963984540054, 0.05 / 1.959963984540054)
    assert z[0] == pytest.approx(expected)
    assert np.isnan(z[1])  # no reference interval: not used


def test_objective_uses_common_random_numbers() -> None:
    objective = CalibrationObjective(calibration_protocols(("aall1621",)), ["ino_kill_max"], 60, seed=4)
    assert objective(np.zeros(1)) == objective(np.zeros(1))
    assert objective(np.array([0.5])) != objective(np.zeros(1))
    assert objective.evaluations == 4


def test_failed_patients_add_to_the_loss() -> None:
    """Targets rest on the patients whose simulation succeeded; each failed patient of a protocol's run adds
    FAILED_PATIENT_LOSS, so a fit cannot gain by making patients fail."""
    table = pd.DataFrame({"protocol": ["a", "a", "b"], "z": [1.0, 2.0, 3.0], "used": [True, True, False],
                          "failed_patients": [4, 4, 1]})
    objective = CalibrationObjective([], [], 10, seed=1)
    assert objective.data_loss(table) == pytest.approx(0.5 * (1.0 + 4.0) + 5 * FAILED_PATIENT_LOSS)


def test_huber_loss_is_gaussian_within_its_threshold_and_linear_beyond() -> None:
    """Continuous with its slope at HUBER_Z; the reweighting gives the same gradient (w z) as the loss."""
    z = np.array([-12.0, -3.0, 0.0, 1.5, 2.999, 3.001, 8.0])
    loss = target_loss(z)
    assert loss[1:5] == pytest.approx(0.5 * z[1:5] ** 2)
    assert loss[[0, 6]] == pytest.approx(HUBER_Z * (np.abs(z[[0, 6]]) - HUBER_Z / 2))
    assert loss[5] - loss[4] == pytest.approx(HUBER_Z * 0.002, rel=1e-3)
    h = 1e-6
    gradient = (target_loss(z + h) - target_loss(z - h)) / (2 * h)
    assert gradient == pytest.approx(huber_weights(z) * z, rel=1e-6)
    assert target_loss(z, huber_z=None) == pytest.approx(0.5 * z**2)
    table = pd.DataFrame({"z": [-12.0, 1.0], "used": [True, True], "failed_patients": [0, 0],
                          "protocol": ["a", "a"]})
    assert CalibrationObjective([], [], 10, seed=1).data_loss(table) == pytest.approx(3.0 * 10.5 + 0.5)
    assert CalibrationObjective([], [], 10, seed=1, huber_z=None).data_loss(table) == pytest.approx(72.5)


def test_shipped_parameter_set_fails_no_patient_of_a_calibration_protocol() -> None:
    """With the default set every patient of every calibration protocol's validation cohort (200 each) solves."""
    failed = failed_patients(validation_table(n_patients=200, seed=5))
    assert (failed == 0).all(), failed[failed > 0]


def test_objective_refuses_fixed_parameters() -> None:
    fixed = next(p.name for p in PARAMETERS if not p.calibrate)
    with pytest.raises(ValueError, match="not calibratable"):
        CalibrationObjective(calibration_protocols(("aall1621",)), [fixed], 10, seed=1)


def test_calibration_is_reproducible_from_its_recorded_settings(tmp_path) -> None:
    first = calibrate(SMALL)
    path = write_parameter_set(first, tmp_path / "tiny.json")
    again = calibrate(settings_from_file(path))
    assert again["values"] == first["values"]
    assert again["fit"]["loss_calibrated"] == first["fit"]["loss_calibrated"]
    assert first["fit"]["loss_calibrated"] <= first["fit"]["loss_literature"]
    loaded = load_parameter_set(path)
    assert loaded.name == "tiny"
    for name, value in first["values"].items():
        assert loaded[name] == value
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


def test_a_calibration_from_a_start_set_also_fits_what_that_set_moved(tmp_path) -> None:
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"name": "start", "values": {"car_contraction_rate": 0.08}}))
    document = calibrate(replace(SMALL, start=str(start), parameters=("ino_kill_max",), max_evaluations=4))
    assert document["fit"]["fitted_parameters"] == ["ino_kill_max", "car_contraction_rate"]
    assert document["settings"]["start"] == str(start)


def test_a_calibration_can_hold_what_its_start_set_moved(tmp_path) -> None:
    """With hold_start only the named parameters are fitted; the start set's other values are kept, in the fit
    and in the file written."""
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"name": "start", "values": {"car_contraction_rate": 0.08}}))
    settings = replace(SMALL, start=str(start), parameters=("ino_kill_max",), max_evaluations=4, hold_start=True)
    document = calibrate(settings)
    assert document["fit"]["fitted_parameters"] == ["ino_kill_max"]
    assert document["fit"]["held_parameters"] == ["car_contraction_rate"]
    path = write_parameter_set(document, tmp_path / "held.json")
    held = load_parameter_set(path)
    assert held["car_contraction_rate"] == 0.08
    assert held["ino_kill_max"] == document["values"]["ino_kill_max"]
    literature = literature_parameters()
    held_decades = (np.log10(0.08 / literature["car_contraction_rate"]),)  # its prior counts, as a constant
    objective = CalibrationObjective(calibration_protocols(settings.protocols), ["ino_kill_max"],
                                     settings.n_patients, settings.seed, oversampling=0.0, held_decades=held_decades)
    decades = np.array([np.log10(held["ino_kill_max"] / literature["ino_kill_max"])])
    comparison = objective.comparison(held)
    assert objective.loss(comparison, decades) == pytest.approx(document["fit"]["loss_calibrated"])
    prior = 0.5 * ((decades[0] / objective.prior_sd_decades) ** 2 + (held_decades[0] / objective.prior_sd_decades) ** 2)
    assert objective.loss(comparison, decades) - objective.data_loss(comparison) == pytest.approx(prior)


def test_a_calibration_is_not_named_after_the_shipped_set_it_starts_from() -> None:
    settings = CalibrationSettings()
    assert settings.start == DEFAULT and settings.name != DEFAULT


def test_an_initial_estimate_starts_the_search_and_is_recorded(tmp_path) -> None:
    """With no search, the result is the initial estimate itself, in place of the start set's value; the
    estimate is recorded and reproduced."""
    settings = replace(SMALL, parameters=("ino_kill_max",), max_evaluations=0, descent_rounds=0,
                       initial={"ino_kill_max": 1.7})
    document = calibrate(settings)
    assert document["values"] == {"ino_kill_max": pytest.approx(1.7, rel=1e-12)}  # via log10 decades
    assert document["settings"]["initial"] == {"ino_kill_max": 1.7}
    path = write_parameter_set(document, tmp_path / "initial.json")
    assert settings_from_file(path) == replace(settings, name="tiny")
    with pytest.raises(ValueError, match="car_kill_max, which is not fitted"):
        calibrate(replace(settings, initial={"car_kill_max": 5.0}))
    with pytest.raises(ValueError, match="outside its bounds"):
        calibrate(replace(settings, initial={"ino_kill_max": 1e9}))


def test_a_prior_sd_widens_one_parameters_prior_and_is_recorded(tmp_path) -> None:
    """A fitted parameter's own prior SD replaces the common one in the loss; it is recorded, and the recorded
    objective rebuilds the loss; it must be for a fitted parameter and positive."""
    settings = replace(SMALL, parameters=("ino_kill_max",), max_evaluations=0, descent_rounds=0,
                       initial={"ino_kill_max": 1.7}, prior_sd={"ino_kill_max": 2.0})
    document = calibrate(settings)
    path = write_parameter_set(document, tmp_path / "wide.json")
    assert settings_from_file(path) == replace(settings, name="tiny")
    objective, fitted, decades = recorded_objective(path)
    comparison = objective.comparison(fitted)
    loss = objective.loss(comparison, decades)
    assert loss == pytest.approx(document["fit"]["loss_calibrated"], rel=1e-12)
    literature = literature_parameters()["ino_kill_max"]
    assert loss - objective.data_loss(comparison) == pytest.approx(0.5 * (np.log10(1.7 / literature) / 2.0) ** 2)
    with pytest.raises(SettingsError, match="prior_sd: a prior SD for car_kill_max, which is not fitted"):
        calibrate(replace(settings, prior_sd={"car_kill_max": 2.0}))
    with pytest.raises(SettingsError, match="expected a positive number"):
        calibrate(replace(settings, prior_sd={"ino_kill_max": 0.0}))


def test_calibrate_names_a_bad_parameter_choice(tmp_path) -> None:
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), "-p", "no_such_parameter"])
    assert outcome.exit_code == 2 and "--parameter" in outcome.output and "no_such_parameter" in outcome.output
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), "--hold-start"])
    assert outcome.exit_code == 2 and "--hold-start" in outcome.output
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), "--protocol", "no-such-trial"])
    assert outcome.exit_code == 2 and "--protocol" in outcome.output and "no-such-trial" in outcome.output
    for option, given, message in (("--initial", "blin_kill_rate", "NAME=VALUE"),
                                   ("--initial", "blin_kill_rate=8", "not fitted"),
                                   ("--prior-sd", "blin_kill_rate=x", "NAME=DECADES"),
                                   ("--prior-sd", "blin_kill_rate=2", "not fitted")):
        outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), option, given])
        assert outcome.exit_code == 2 and option in outcome.output and message in outcome.output
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ValueError, match="hold_start"):
        calibrate(replace(SMALL, parameters=(), hold_start=True))
    with pytest.raises(SettingsError, match="parameters: not calibratable: il6_baseline"):
        calibrate(replace(SMALL, parameters=("il6_baseline",)))


def test_calibrate_reproduce_locates_a_bad_recorded_setting(tmp_path) -> None:
    """A recorded setting a run cannot start with is named by file and field, not as a command-line option."""
    for setting, value, message in (("base", "calibrated-0.22", "expected 'literature-0.1'"),
                                    ("parameters", ["il6_baseline"], "not calibratable: il6_baseline")):
        settings = {**asdict(SMALL), setting: value}
        path = tmp_path / f"{setting}.json"
        path.write_text(json.dumps({"name": "bad", "values": {}, "settings": settings}))
        outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), "--reproduce", str(path)])
        assert outcome.exit_code == 2, outcome.output
        output = " ".join(outcome.output.split())  # undo the console's line wrapping
        assert f"settings.{setting}" in output and message in output and "--parameter" not in output
    with pytest.raises(SettingsError, match="base: expected"):
        calibrate(replace(SMALL, base="calibrated-0.22"))


def test_calibrate_cli_records_its_search_settings_and_reproduces_them(tmp_path) -> None:
    """The CMA-ES step, the protocols and the other options land in the file's settings; --reproduce re-runs them
    exactly."""
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    options = ["-n", "10", "--oversampling", "0", "-p", "ino_kill_max", "--evaluations", "2", "--step", "0.4",
               "--start", LITERATURE, "--protocol", "aall1621"]
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(first), *options])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(first.read_text())
    assert document["settings"]["initial_step_decades"] == 0.4
    assert document["settings"]["protocols"] == ["aall1621"]
    assert {target["protocol"] for target in document["fit"]["targets"]} == {"aall1621"}
    assert document["fit"]["evaluations"] > 1  # the search ran, from the recorded step
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(again), "--reproduce", str(first)])
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(again.read_text())["values"] == document["values"]


def test_shipped_calibration_reproduces_its_recorded_fit() -> None:
    if DEFAULT not in shipped_parameter_sets():
        pytest.skip("no calibrated set shipped")
    shipped = leukosim.default_parameters()
    assert shipped.name == DEFAULT
    from importlib.resources import files

    document = json.loads(files("leukosim").joinpath(f"parameter_sets/{DEFAULT}.json").read_text())
    objective, fitted, decades = recorded_objective(DEFAULT)
    assert fitted.values == shipped.values
    assert objective.names == document["fit"]["fitted_parameters"]
    loss = objective.loss(objective.comparison(shipped), decades)
    assert loss == pytest.approx(document["fit"]["loss_calibrated"], rel=1e-9)


def test_shipped_calibrations_form_one_chain_from_the_literature_values() -> None:
    """Each shipped calibrated set starts from the one before it (the first from the literature values), so
    `leukosim calibrate --reproduce NAME` rebuilds every link from shipped files only."""
    calibrated = shipped_parameter_sets()[1:]
    starts = [settings_from_file(name).start for name in calibrated]
    assert starts == [LITERATURE, *calibrated[:-1]]


@pytest.mark.parametrize("values, message", [
    ({"no_such_parameter": 1.0}, "not a model parameter"),
    ({next(p.name for p in PARAMETERS if not p.calibrate): 123.0}, "cannot change"),
    ({"ino_kill_max": -1.0}, "expected a finite number"),
])
def test_bad_parameter_set_files_are_located(tmp_path, values: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "values": values}))
    with pytest.raises(ParameterSetError, match=message) as error:
        load_parameter_set(path)
    assert str(path) in str(error.value)


def test_literature_set_is_always_available() -> None:
    assert shipped_parameter_sets()[0] == LITERATURE
    assert shipped_parameter_sets()[-1] == DEFAULT  # by version: the default is the newest calibration
    assert load_parameter_set(LITERATURE).values == tuple(p.value for p in PARAMETERS)


def test_out_of_sample_targets_are_scored_apart_and_never_fitted() -> None:
    """A protocol whose targets are all predictions is no calibration protocol; validation scores its targets in
    their own row, which the calibration rows do not count."""
    registry = leukosim.load_protocol("cibmtr-tisagenlecleucel")
    assert registry.name not in {p.name for p in calibration_protocols()}
    with pytest.raises(ValueError, match="no bundled protocol with calibration targets"):
        calibration_protocols(("cibmtr-tisagenlecleucel",))
    table = validation_table(n_patients=60, seed=2, protocols=[registry, leukosim.load_protocol("chop-ctl019")],
                             oversampling=0.0)
    hits = hit_fractions(table).set_index("therapy_class")
    predictions = hits.loc["out of sample (predictions)"]
    assert predictions["targets"] == len(registry.targets) == 4
    assert predictions["hits"] == int(table.loc[table["out_of_sample"], "hit"].fillna(False).sum())
    assert hits.loc["overall (calibration targets)", "targets"] == int(table["calibrate"].sum())
    records = validation_records(table)
    assert {r["out_of_sample"] for r in records if r["protocol"] == registry.name} == {True}
    assert not any(r["out_of_sample"] for r in records if r["protocol"] == "chop-ctl019")


def test_validation_table_and_records() -> None:
    protocols = [leukosim.load_protocol("aall1331"), leukosim.load_protocol("eliana")]
    table = validation_table(n_patients=60, seed=2, protocols=protocols)
    assert len(table) == sum(len(p.targets) for p in protocols)
    assert set(table["therapy_class"]) == {"blinatumomab", "chemotherapy", "CAR-T"}
    records = validation_records(table)
    assert {"protocol", "target", "published", "published_ci", "simulated", "simulated_ci", "hit"} <= set(records[0])
    hits = hit_fractions(table).set_index("therapy_class")
    everything = hits.loc["overall (all targets)"]
    assert everything["hits"] == int(table["hit"].fillna(False).sum())
    assert everything["with_interval"] == int(table["hit"].notna().sum())
    fitted = table[table["calibrate"]]
    calibration = hits.loc["overall (calibration targets)"]
    assert calibration["hits"] == int(fitted["hit"].fillna(False).sum())
    assert hits.loc[~hits.index.str.startswith("overall"), "hits"].sum() == calibration["hits"]


def test_validation_simulates_at_least_sixteen_times_each_published_cohort() -> None:
    """Cohorts grow with the largest published cohort behind a protocol's targets, per arm by allocation, so the
    Monte Carlo error of a simulated proportion stays at most a quarter of the published sampling error."""
    aieop, aall1331 = leukosim.load_protocol("aieop-bfm-2000"), leukosim.load_protocol("aall1331")
    assert cohort_size(aieop, 1000) == 16 * 3184
    assert cohort_size(aieop, 100, oversampling=0.0) == 100
    assert cohort_size(aall1331, 100) == 16 * 105 * 2  # two arms of equal allocation, 105 randomised to blinatumomab
    assert cohort_size(aall1331, 5000) == 5000
    table = validation_table(n_patients=100, seed=2, protocols=[aall1331], oversampling=4.0)
    assert (table["cohort"] == 840).all()
    by_arm = table[table["target"] == "hsct"].set_index("arm")["n_simulated"]
    assert by_arm.sum() <= 840 and by_arm.min() > 300  # about half of the cohort in each arm


def test_validate_command_writes_json_and_html(tmp_path) -> None:
    out, page = tmp_path / "validation.json", tmp_path / "validation.html"
    outcome = CliRunner().invoke(app, ["validate", "--patients", "20", "--json", str(out), "--html", str(page),
                                       "--parameters", LITERATURE])
    assert outcome.exit_code == 0, outcome.output
    assert "hit fraction" in outcome.output
    records = json.loads(out.read_text())
    assert {r["protocol"] for r in records} >= {"eliana", "aall1331", "aall1621", "blina-rr-peds", "aieop-bfm-2000"}
    assert "Research use only" in page.read_text()
    assert "<td>prediction</td>" in page.read_text() and "out of sample (predictions)" in outcome.output


def test_run_rejects_an_unknown_parameter_set(tmp_path) -> None:
    outcome = CliRunner().invoke(app, ["run", "eliana", "-n", "5", "-o", str(tmp_path), "--parameters", "nope"])
    assert outcome.exit_code == 2
    assert "cannot read" in outcome.output and "literature-0.1" in outcome.output
    outcome = CliRunner().invoke(app, ["calibrate", "-o", str(tmp_path / "x.json"), "--start", "nope"])
    assert outcome.exit_code == 2 and "--start" in outcome.output and "cannot read" in outcome.output
    assert not (tmp_path / "x.json").exists()


def test_selection_gives_every_badly_missed_target_a_lever() -> None:
    from leukosim.calibration.fit import select_parameters

    screening = pd.DataFrame({"parameter": ["a", "b", "c", "d"], "sensitivity": [9.0, 5.0, 1.0, 0.1]})
    # targets: 0 badly missed and moved only by c; 1 well fitted; 2 badly missed, moved most by d (insensitive)
    effects = np.array([[0.0, 4.0, 0.5], [0.0, 3.0, 0.0], [2.0, 0.0, 0.1], [0.0, 0.0, 1.0]])
    base_losses = np.array([4.5, 0.1, 3.0])
    chosen = select_parameters(screening, effects, base_losses, min_sensitivity=0.5, max_parameters=2)
    assert chosen == ["c", "a"]  # c for target 0; target 2's best sensitive mover is a; then the budget is full
    assert select_parameters(screening, effects, base_losses, 0.5, 4) == ["c", "a", "b"]  # d is not identifiable


def test_screening_descent_keeps_only_the_moves_that_lower_the_objective() -> None:
    """Screening credits moving c up most, then a up and b down; d helped in neither direction. Moves are tried
    best first: c raises this objective (screening and the objective can disagree: interactions, the prior), so
    it is undone; a and b lower it and are kept; d is never tried."""
    from leukosim.calibration.fit import screening_descent

    step = np.log10(3.0)
    names = ["car_kill_max", "ino_kill_max", "blin_kill_rate", "leukemia_net_growth"]

    class Quadratic:
        def __init__(self) -> None:
            self.names, self.evaluations = names, 0

        def __call__(self, x: np.ndarray) -> float:
            self.evaluations += 1
            a, b, c, _ = x
            return float((a - step) ** 2 + (b + step) ** 2 + c * (1.0 - 5.0 * a))

    screening = pd.DataFrame({"parameter": names[::-1], "loss_up": [1.0, -0.4, 0.5, -0.2],
                              "loss_down": [2.0, 0.4, -0.2, 0.3]})  # rows in another order than the names
    objective = Quadratic()
    x, loss = screening_descent(objective, np.zeros(4), screening, factor=3.0)
    np.testing.assert_allclose(x, [step, -step, 0.0, 0.0])
    assert loss == pytest.approx(0.0, abs=1e-12)
    assert objective.evaluations == 4  # the start, then a, b and c (best first); d never


def test_descent_refines_its_step_when_a_round_keeps_nothing() -> None:
    """One parameter's optimum lies 0.7 decades up: factor-3 steps (0.477 decades) reach 0.477 and then
    overshoot (0.954 is worse), so the next round screens at sqrt(3) (0.239 decades) and reaches 0.716; the
    step cannot shrink below the final factor, so the descent ends there. The other parameter stays put."""
    from leukosim.calibration.fit import descend

    names = ["car_contraction_rate", "car_memory_decay"]  # no bounds of their own: three decades either side
    optimum = np.array([0.7, 0.0])

    class Quadratic:
        huber_z = None  # the Gaussian loss

        def __init__(self) -> None:
            self.names, self.evaluations = names, 0

        def parameters(self, decades: np.ndarray) -> np.ndarray:
            return np.asarray(decades, dtype=float)

        def comparison(self, decades: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame({"z": (decades - optimum) / 0.1, "used": True})

        def __call__(self, decades: np.ndarray) -> float:
            self.evaluations += 1
            return float(0.5 * (((decades - optimum) / 0.1) ** 2).sum())

    messages: list[str] = []
    point, screened = descend(Quadratic(), np.zeros(2), 3.0, 1.7, rounds=10, progress=messages.append,
                              joint_steps=False)
    up, fine = np.log10(3.0), np.log10(np.sqrt(3.0))
    np.testing.assert_allclose(point, [up + fine, 0.0], atol=1e-12)
    assert any("x1.73" in m for m in messages) and not any("x1.7:" in m or "x1.7 " in m for m in messages)
    assert list(screened.table["parameter"]) == names
    coarse, _ = descend(Quadratic(), np.zeros(2), 3.0, 3.0, rounds=10, joint_steps=False)  # no refinement
    np.testing.assert_allclose(coarse, [up, 0.0], atol=1e-12)


def test_a_joint_step_finds_the_move_that_no_single_move_shows() -> None:
    """Two parameters in a narrow diagonal valley (residuals 10 (x1 - x2) and x1 + x2 - 2 log10 3, optimum one
    factor-3 step up in both): moving either alone raises the loss, so one-at-a-time descent stays put, while
    the joint step on the screening's secant Jacobian lands on the optimum."""
    from leukosim.calibration.fit import descend

    names = ["car_contraction_rate", "car_memory_decay"]
    up = np.log10(3.0)

    class Valley:
        huber_z = None  # the Gaussian loss

        def prior_sds(self) -> np.ndarray:
            return np.full(2, 1e9)  # no prior

        def __init__(self) -> None:
            self.names, self.evaluations = names, 0

        def parameters(self, decades: np.ndarray) -> np.ndarray:
            return np.asarray(decades, dtype=float)

        def comparison(self, decades: np.ndarray) -> pd.DataFrame:
            x1, x2 = decades
            return pd.DataFrame({"z": [10.0 * (x1 - x2), x1 + x2 - 2.0 * up], "used": True})

        def __call__(self, decades: np.ndarray) -> float:
            self.evaluations += 1
            return float(0.5 * (self.comparison(decades)["z"] ** 2).sum())

    stuck, _ = descend(Valley(), np.zeros(2), 3.0, 3.0, rounds=3, joint_steps=False)
    np.testing.assert_array_equal(stuck, [0.0, 0.0])
    messages: list[str] = []
    point, _ = descend(Valley(), np.zeros(2), 3.0, 3.0, rounds=3, progress=messages.append)
    np.testing.assert_allclose(point, [up, up], atol=1e-9)
    assert any(m.startswith("joint step x1 (2 parameters)") for m in messages)


def test_the_joint_step_descends_the_huber_loss() -> None:
    """One parameter x, a target missed by 20 SDs that x barely moves (z1 = 20 + 0.1 x) and one it fits
    (z2 = x - 1). The Gaussian optimum gives up the fitted target to nudge the far one (x = -0.99); the Huber
    loss caps the far target's pull at 3 SDs (x = 1 - 0.3 = 0.7), and the reweighted step goes there."""
    from leukosim.calibration.fit import Screening, joint_step

    class Line:
        names = ["car_contraction_rate"]

        def prior_sds(self) -> np.ndarray:
            return np.full(1, 1e9)  # no prior

        def __init__(self, huber_z: float | None) -> None:
            self.huber_z = huber_z

        def residuals(self, x: np.ndarray) -> np.ndarray:
            return np.array([20.0 + 0.1 * x[0], x[0] - 1.0])

        def __call__(self, x: np.ndarray) -> float:
            return float(target_loss(self.residuals(x), self.huber_z).sum())

    jacobian = np.array([[0.1], [1.0]])
    for huber_z, expected in ((HUBER_Z, 0.7), (None, -0.99)):
        objective = Line(huber_z)
        screening = Screening(pd.DataFrame(), np.zeros((1, 2)), np.zeros(2), objective.residuals(np.zeros(1)),
                              jacobian)
        x, _ = joint_step(objective, np.zeros(1), screening, factor=100.0)
        assert x[0] == pytest.approx(expected, abs=0.01)


def test_a_descent_only_calibration_moves_parameters_that_lower_the_loss() -> None:
    """One round of screening descent and no search: the parameters it moves are reported as fitted, every one
    of them at most a screening step (x3) from its start (one-at-a-time moves are exactly one; a joint step
    moves each by up to one), and the loss falls."""
    settings = CalibrationSettings(name="descent", n_patients=40, protocols=("aall1621",), start=LITERATURE,
                                   descent_rounds=1, max_evaluations=0, cohort_oversampling=0.0)
    document = calibrate(settings)
    literature = literature_parameters()
    moved = {name: value for name, value in document["values"].items() if value != literature[name]}
    assert moved and set(moved) <= set(document["fit"]["fitted_parameters"])
    for name, value in moved.items():
        assert abs(np.log10(value / literature[name])) <= np.log10(3.0) + 1e-9
    assert document["fit"]["loss_calibrated"] < document["fit"]["loss_literature"]
