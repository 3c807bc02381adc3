"""Forecast a fitted patient under alternative protocols: K parameter vectors from the approximate posterior,
each simulated with the full stochastic engine, outcome probabilities with Monte Carlo (Wilson) intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..endpoints.outcomes import mrd_column
from ..endpoints.statistics import RESPONDER, analysed, wilson_interval
from ..io.jsonsafe import json_safe
from ..model.registry import INDEX
from ..population.covariates import Covariates
from ..population.individual import IIV_OMEGA, parameters_from_etas, random_effects
from ..protocol.schema import Protocol
from ..trial import simulate_patients
from .fit import NOTICE, PatientFit

__all__ = ["Forecast", "forecast", "DEFAULT_SAMPLES", "LANDMARK_DAYS"]

#: Landmarks of the relapse, EFS and OS probabilities (days from each protocol's EFS/OS origin).
LANDMARK_DAYS = {"1y": 365.0, "2y": 730.0}
#: Posterior samples simulated per alternative by default.
DEFAULT_SAMPLES = 200


@dataclass(frozen=True)
class Forecast:
    """Outcome probabilities of one fitted patient under each (protocol, arm): columns protocol, arm, endpoint,
    probability, ci_low, ci_high (Wilson 95%), n (samples that count)."""

    table: pd.DataFrame
    samples: int
    seed: int

    def to_document(self, fit: PatientFit) -> dict[str, object]:
        """JSON-ready forecast: notice, settings, the fit's estimates, one record per row."""
        return {"notice": NOTICE, "samples": self.samples, "seed": self.seed, "fit": fit.estimates(),
                "patient": {"protocol": fit.protocol, "arm": fit.arm, "data_file": fit.data_file},
                "uncertainty": "each sample draws the estimated random effects from the Laplace posterior, the "
                               "others from the population prior, and the stochastic layers of the engine; "
                               "intervals are Wilson 95% intervals of the Monte Carlo proportion",
                "outcomes": json_safe(self.table.to_dict(orient="records"))}


def posterior_etas(fit: PatientFit, covariates: Covariates, seed: int) -> np.ndarray:
    """Random effects of the forecast patients ``covariates`` (rows; registry columns, log scale): the
    population draws of run ``seed`` (:func:`random_effects`), whose standardised values of the estimated
    parameters are mapped to the fit's posterior, ``eta = MAP + L z`` with ``L L' = covariance``."""
    etas = random_effects(covariates, seed)
    columns = np.array([INDEX[name] for name in fit.estimated])
    z = etas[:, columns] / IIV_OMEGA[columns]
    etas[:, columns] = np.array(fit.eta) + z @ np.linalg.cholesky(np.array(fit.covariance)).T
    return etas


def _renumbered(covariates: Covariates) -> Covariates:
    """The same covariates with patient ids 0, 1, ... (one forecast sample each)."""
    return replace(covariates, patient_id=np.arange(len(covariates), dtype=np.int64))


def forecast(fit: PatientFit, alternatives: Sequence[tuple[Protocol, str | None]], samples: int = DEFAULT_SAMPLES,
             seed: int = 0) -> Forecast:
    """Simulate the fitted patient ``samples`` times on each (protocol, arm name or None for every arm) of
    ``alternatives``, from his baseline covariates; the same samples (patient ids 0..samples-1, common random
    numbers) serve every alternative. Raises ValueError for an unknown arm."""
    if samples < 1:
        raise ValueError("samples must be at least 1")
    parameters = fit.parameters()
    covariates = _renumbered(fit.patient_covariates().take(np.zeros(samples, dtype=np.int64)))
    p = parameters_from_etas(parameters, covariates, posterior_etas(fit, covariates, seed), seed)
    rows: list[dict[str, object]] = []
    for protocol, arm_name in alternatives:
        names = [arm.name for arm in protocol.arms]
        if arm_name is not None and arm_name not in names:
            raise ValueError(f"protocol {protocol.name!r} has no arm {arm_name!r} (arms: {', '.join(names)})")
        for index, arm in enumerate(protocol.arms):
            if arm_name is not None and arm.name != arm_name:
                continue
            patients = simulate_patients(protocol, parameters, seed, covariates, p,
                                         np.full(samples, index, dtype=np.int64))[0]
            rows += [{"protocol": protocol.name, "arm": arm.name, **row} for row in _outcomes(protocol, arm.name,
                                                                                              patients)]
    return Forecast(pd.DataFrame(rows, columns=["protocol", "arm", "endpoint", "probability", "ci_low", "ci_high",
                                                "n"]), samples, seed)


def _outcomes(protocol: Protocol, arm: str, patients: pd.DataFrame) -> list[dict[str, object]]:
    """Proportions over the samples whose simulation succeeded: CR/CRi (best response), MRD negative at the
    arm's first MRD assessment (not assessed counts as positive), relapse by each landmark, event-free and alive
    at each landmark (only samples followed that long, or with an event before, count)."""
    ok = analysed(patients)

    def row(endpoint: str, success: np.ndarray, counted: np.ndarray) -> dict[str, object]:
        n = int(counted.sum())
        k = int((success & counted).sum())
        low, high = wilson_interval(k, n)
        return {"endpoint": endpoint, "probability": k / n if n else np.nan, "ci_low": low, "ci_high": high, "n": n}

    every = np.ones(len(ok), dtype=bool)
    rows = [row("cr_or_cri", ok["best_response"].isin(RESPONDER).to_numpy(bool), every)]
    phases = next(candidate for candidate in protocol.arms if candidate.name == arm).phases
    first = next((item for phase in phases for item in phase.assess if item.assay != "morphology"), None)
    if first is not None and mrd_column(first.name) in ok:
        mrd = ok[mrd_column(first.name)].astype("Float64").to_numpy(float, na_value=np.nan)
        rows.append(row(f"mrd_negative_{first.name}", np.nan_to_num(mrd, nan=np.inf) < first.threshold, every))
    relapse_day = ok["relapse_day"].astype("Float64").to_numpy(float, na_value=np.inf)
    for label, day in LANDMARK_DAYS.items():
        rows.append(row(f"relapse_by_{label}", relapse_day <= day, every))
        for endpoint in ("efs", "os"):
            days = ok[f"{endpoint}_days"].astype(float).to_numpy()
            event = ok[f"{endpoint}_event"].astype(bool).to_numpy()
            rows.append(row(f"{endpoint}_{label}", ~(event & (days <= day)), (days >= day) | event))
    return rows
