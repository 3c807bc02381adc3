"""Patient digital twin: parameter recovery from data simulated by leukosim itself, located reader errors,
reproducible forecasts.

Recovery: a virtual patient (covariates of patient ``PATIENT`` of seed ``SEED``; latent covariates at the
population median, as the fit assumes them) gets known non-zero random effects ``TRUTH``, is simulated by the
full stochastic engine (management, extinction, assays), written as a run directory and exported by the NONMEM
exporter; every observation above its limit then gets log-normal noise with the fit's residual SDs (seeded).
The fit must put every estimate within 3 posterior SDs of the truth (Laplace SD; the data-generating engine
differs from the fitted most-probable course by management and stochastic extinction, so a 95% bound would be
tight), and the well-informed ones (posterior SD <= 1/4 of the prior's) closer to the truth than the prior mean
and within 15% of the true parameter value.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leukosim.cli import app
from leukosim.io.nonmem import nonmem_dataset
from leukosim.io.rundir import write_run
from leukosim.model.registry import INDEX, default_parameters
from leukosim.population.covariates import draw_covariates, latent_law, sample_distribution
from leukosim.population.individual import (
    individual_parameters, latent_effects_at_median, parameters_from_etas, random_effects,
)
from leukosim.protocol.load import load_protocol
from leukosim.protocol.schema import LATENT_LIMITS
from leukosim.trial import TrialResult, simulate_patients
from leukosim.twin import RESIDUAL_SD, PatientDataError, PatientFit, fit_patient, forecast, read_patient_data
from leukosim.twin.fit import PatientModel, patient_covariates

SEED = 5
NOISE_SEED = 1
#: protocol -> (patient index, true random effects)
CASES = {
    "eliana": (0, {"car_expansion_rate": 0.3, "car_contraction_rate": -0.4, "car_memory_decay": -0.35,
                   "leukemia_net_growth": -0.3}),
    "aall1331": (1, {"blin_clearance": -0.4, "leukemia_net_growth": -0.3}),
}
INFORMED_SD_RATIO = 0.25
RELATIVE_TOLERANCE = 0.15


def simulated_data(name: str, directory: Path) -> Path:
    """The NONMEM dataset of one simulated patient with known random effects, with seeded residual noise."""
    protocol, parameters = load_protocol(name), default_parameters()
    index, truth = CASES[name]
    covariates = draw_covariates(protocol.population, SEED, np.array([index]), parameters)
    medians = {field: sample_distribution(latent_law(protocol.population, field, parameters), np.array([0.5]))
               for field in LATENT_LIMITS}
    covariates = replace(covariates, patient_id=np.array([0]), **medians)
    etas = np.zeros((1, len(parameters.values)))
    for parameter, eta in truth.items():
        etas[0, INDEX[parameter]] = eta
    p = parameters_from_etas(parameters, covariates, etas, SEED)
    latent_effects_at_median(p, parameters, covariates)  # as the twin assumes them
    patients, events, trajectories = simulate_patients(protocol, parameters, SEED, covariates, p,
                                                       np.zeros(1, dtype=np.int64), trajectory_patients=1)
    run = write_run(TrialResult(protocol, parameters, SEED, patients.reset_index(drop=True),
                                events.reset_index(drop=True), trajectories.reset_index(drop=True), 1),
                    directory / f"run-{name}")
    data = nonmem_dataset(run)
    observed = data["EVID"] == 0
    rows = data[observed]
    sd = rows["DVID"].map(RESIDUAL_SD).to_numpy()
    noisy = rows["DV"].to_numpy() * np.exp(sd * np.random.default_rng(NOISE_SEED).standard_normal(len(rows)))
    blq = (rows["BLQ"].to_numpy() == 1) | (noisy < rows["LLOQ"].to_numpy())
    data.loc[observed, "DV"] = np.where(blq, rows["LLOQ"], noisy)
    data.loc[observed, "BLQ"] = blq.astype(int)
    path = directory / f"{name}.csv"
    data.to_csv(path, index=False, float_format="%.10g")
    return path


@pytest.fixture(scope="module")
def eliana_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_data("eliana", tmp_path_factory.mktemp("twin"))


def test_zero_etas_give_typical_values_and_random_etas_the_trial_parameters() -> None:
    protocol, parameters = load_protocol("eliana"), default_parameters()
    covariates = draw_covariates(protocol.population, SEED, np.arange(4), default_parameters())
    typical = parameters_from_etas(parameters, covariates, np.zeros((4, len(parameters.values))), SEED)
    expected = np.tile(parameters.array(), (4, 1))  # relapsed disease grows by the registry factor
    expected[:, INDEX["leukemia_net_growth"]] *= np.where(covariates.relapsed,
                                                          parameters["leukemia_growth_relapsed_factor"], 1.0)
    assert np.array_equal(typical[:, :len(parameters.values)], expected)
    assert np.array_equal(parameters_from_etas(parameters, covariates, random_effects(covariates, SEED), SEED),
                          individual_parameters(parameters, covariates, SEED))


def test_the_twin_takes_the_relapse_timing_from_the_data(tmp_path: Path) -> None:
    """A late first relapse is a measured covariate (LATE), not the population's majority."""
    path = simulated_data("aall1331", tmp_path)
    protocol, parameters = load_protocol("aall1331"), default_parameters()
    for late in (0, 1):
        table = pd.read_csv(path).assign(LATE=late)
        table.to_csv(tmp_path / "late.csv", index=False)
        covariates, sources = patient_covariates(read_patient_data(tmp_path / "late.csv"), protocol.population,
                                                 parameters)
        assert covariates.late_relapse.tolist() == [bool(late)]
        assert sources["late_relapse"] == "data LATE"


@pytest.mark.parametrize("name", sorted(CASES))
def test_map_recovers_known_parameters(name: str, tmp_path: Path, eliana_data: Path) -> None:
    path = eliana_data if name == "eliana" else simulated_data(name, tmp_path)
    fit = fit_patient(read_patient_data(path), load_protocol(name))
    truth = CASES[name][1]
    assert fit.converged and fit.hessian_positive_definite
    assert set(fit.estimated) == set(truth)
    report = []
    for row in fit.estimates():
        parameter, eta, sd, omega = row["parameter"], row["eta"], row["eta_sd"], row["omega"]
        error = eta - truth[parameter]
        report.append(f"{parameter}: relative error {np.expm1(error):+.1%}, {error / sd:+.1f} posterior SD")
        assert abs(error) <= 3.0 * sd, report[-1]
        if sd <= INFORMED_SD_RATIO * omega:
            assert abs(error) < abs(truth[parameter]), report[-1]
            assert abs(np.expm1(error)) <= RELATIVE_TOLERANCE, report[-1]
    print(f"{name}: " + "; ".join(report))


def test_gradient_is_one_sided_where_the_solver_fails_on_one_side() -> None:
    """Where the perturbed point on one side fails (+inf), that component is the other side's one-sided
    difference; the others stay central."""
    model = object.__new__(PatientModel)  # value_and_gradient needs only the objective

    def objective(etas: np.ndarray) -> np.ndarray:  # eta0^2 + eta1^2 + eta1, failing where eta0 > 0.005
        etas = np.atleast_2d(etas)
        return np.where(etas[:, 0] > 0.005, np.inf, (etas**2).sum(axis=1) + etas[:, 1])

    model.objective = objective
    value, gradient = model.value_and_gradient(np.array([0.0, 0.3]))
    assert value == pytest.approx(0.39)
    assert gradient[0] == pytest.approx(-0.01)  # backward difference of eta0^2 at 0: -h
    assert gradient[1] == pytest.approx(1.6)  # central: 2 x 0.3 + 1


def test_reader_locates_errors(tmp_path: Path, eliana_data: Path) -> None:
    lines = eliana_data.read_text().splitlines()
    header = lines[0].split(",")
    cases = {
        "missing": ([",".join(header[:-1])] + [",".join(line.split(",")[:-1]) for line in lines[1:]],
                    ":1: missing column(s) ORIG"),
        "text": (lines[:2] + [lines[2].replace(lines[2].split(",")[1], "soon", 1)] + lines[3:],
                 f":3:{header.index('TIME') + 1} (TIME): 'soon' is not a number"),
        "two patients": (lines[:3] + [",".join(["2", *lines[3].split(",")[1:]])] + lines[4:],
                         f":4:{header.index('ID') + 1} (ID): a second patient"),
    }
    for label, (content, message) in cases.items():
        bad = tmp_path / f"{label.replace(' ', '_')}.csv"
        bad.write_text("\n".join(content) + "\n")
        with pytest.raises(PatientDataError) as error:
            read_patient_data(bad)
        assert str(error.value).startswith(str(bad)) and message in str(error.value), (label, str(error.value))
    result = CliRunner().invoke(app, ["fit-patient", str(tmp_path / "two_patients.csv"), "--protocol", "eliana"])
    assert result.exit_code == 2 and "a second patient" in result.output and "Traceback" not in result.output


def test_forecast_is_reproducible_with_intervals(tmp_path: Path, eliana_data: Path) -> None:
    fit_file = tmp_path / "fit.json"
    result = CliRunner().invoke(app, ["fit-patient", str(eliana_data), "--protocol", "eliana", "--out",
                                      str(fit_file)])
    assert result.exit_code == 0, result.output
    fit = PatientFit.from_json(fit_file)
    alternatives = [(load_protocol("eliana"), None), (load_protocol("aall1331"), "blinatumomab")]
    first = forecast(fit, alternatives, samples=16, seed=2)
    table = first.table
    assert set(table["protocol"]) == {"eliana", "aall1331"}
    assert {"cr_or_cri", "relapse_by_1y", "efs_2y", "os_2y"} <= set(table["endpoint"])
    assert table["probability"].between(0, 1).all() and (table["n"] > 0).all()
    assert ((table["ci_low"] <= table["probability"]) & (table["probability"] <= table["ci_high"])).all()
    assert (table["ci_high"] - table["ci_low"] > 0.05).all()  # 16 samples: never a degenerate interval
    assert first.table.equals(forecast(fit, alternatives, samples=16, seed=2).table)
    out = tmp_path / "forecast.json"
    result = CliRunner().invoke(app, ["forecast", str(fit_file), "--protocols", "eliana,aall1331:blinatumomab",
                                      "--samples", "16", "--seed", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert "Research use only" in document["notice"]
    assert [row["probability"] for row in document["outcomes"]] == pytest.approx(table["probability"].tolist())
