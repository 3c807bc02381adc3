"""Untreated, marrow-replacing leukemia: the death hazard of marrow failure, and a protocol completed without
remission counted as treatment failure (no response, then progression)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import leukosim
from leukosim.protocol.load import parse_protocol

# An observation-only protocol: no drug, one marrow assessment whose non-response keeps the patient on protocol.
OBSERVATION = """\
name: observation
title: Observation of untreated relapsed leukemia
population:
  disease: relapsed_refractory
  age_years: {distribution: uniform, range: [3, 18]}
  male_fraction: 0.5
  marrow_blasts_percent: {distribution: uniform, range: [BLASTS_LOW, BLASTS_HIGH]}
  wbc_per_uL: {distribution: lognormal, median: 3000, cv: 0.5, range: [500, 20000]}
arms:
  - name: observation
    phases:
      - name: watch
        days: 30
        assess:
          - {name: day-29, day: 29}
        then:
          - else: follow_up
follow_up_days: 365
endpoints:
  efs: {origin: enrollment, events: [no_response, relapse, death], no_response_time: day_1}
"""
HAZARD = 0.02  # 1/day, inside the parameter's bounds


def _observe(blasts: tuple[float, float], hazard: float, n: int = 1500) -> pd.DataFrame:
    text = OBSERVATION.replace("BLASTS_LOW", str(blasts[0])).replace("BLASTS_HIGH", str(blasts[1]))
    protocol = parse_protocol(text, "observation.yaml")
    parameters = leukosim.default_parameters().replace(name="test", marrow_failure_death_hazard=hazard)
    patients = leukosim.simulate_trial(protocol, n, seed=11, parameters=parameters, trajectory_patients=0).patients
    assert (patients["status"] == "ok").all()
    return patients


def _died_by(patients: pd.DataFrame, day: float) -> np.ndarray:
    return (patients["os_event"].astype(bool) & (patients["os_days"] <= day)).to_numpy(bool)


def test_a_full_marrow_carries_the_marrow_failure_death_hazard() -> None:
    """With 95-99% blasts and no therapy the marrow stays full, so deaths by day 20 follow 1 - exp(-h x
    occupancy x 20) with occupancy between 0.5 and 1 (binomial slack of 4 SE); with MRD-level disease
    the same hazard kills nobody."""
    full = _observe((95, 99), HAZARD)
    dead = _died_by(full, 20.0)
    assert set(full.loc[dead, "death_cause"]) == {"infection"}
    low, high = 1 - math.exp(-HAZARD * 0.5 * 20), 1 - math.exp(-HAZARD * 20)
    slack = 4 * math.sqrt(high * (1 - low) / len(full))
    assert low - slack < dead.mean() < high + slack
    residual = _observe((0.001, 0.01), HAZARD)
    assert _died_by(residual, 20.0).sum() == 0


def test_the_hazard_scales_with_its_parameter() -> None:
    """Ten times less hazard, about ten times fewer early deaths (same patients: common random numbers)."""
    strong = _died_by(_observe((95, 99), HAZARD), 20.0).mean()
    weak = _died_by(_observe((95, 99), HAZARD / 10), 20.0).mean()
    assert 0 < weak < strong / 5


def test_completing_a_protocol_without_remission_is_treatment_failure() -> None:
    """Patients who finish the protocol never in remission get the no-response event (at day 1 here) and then
    progress: every survivor of the protocol dies of leukemia within the post-progression law, and nobody is
    event-free."""
    patients = _observe((95, 99), 1e-3)
    alive_at_end = ~_died_by(patients, 30.0)
    assert alive_at_end.sum() > 0.9 * len(patients)
    failed = patients[alive_at_end]
    assert (failed["best_response"] == "NR").all()
    assert (failed["efs_event_type"] == "no_response").all()
    assert (failed["efs_days"] == 1.0).all()
    assert patients["efs_event"].astype(bool).all()
    assert (failed.loc[failed["os_event"].astype(bool), "death_cause"] == "leukemia").all()
    assert failed["os_event"].astype(bool).mean() > 0.5


def test_residual_disease_in_remission_is_not_treatment_failure() -> None:
    """Patients in remission at the assessment finish the protocol in follow-up, without a no-response event
    (only the few whose untreated residue outgrew 5% blasts by day 29 are failures)."""
    patients = _observe((0.001, 0.01), 1e-3)
    remission = patients["best_response"].isin(["CR", "CRi"]).to_numpy(bool)
    assert remission.mean() > 0.9
    assert not (patients.loc[remission, "efs_event_type"] == "no_response").any()
    assert (patients.loc[~remission, "efs_event_type"] == "no_response").all()
