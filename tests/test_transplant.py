"""Transplant access: a scheduled allogeneic HSCT goes ahead for the share ``hsct_access_probability`` of the
patients who reach it (donor found, fit in time), decided by each patient's own uniform draw."""

from __future__ import annotations

import numpy as np
import pandas as pd

import leukosim


def _patients_with(events: pd.DataFrame, event: str, detail: str) -> set[int]:
    return set(events.loc[(events["event"] == event) & (events["detail"] == detail), "patient_id"])


def _reached(events: pd.DataFrame) -> set[int]:
    """Patients who started the transplant phase."""
    return _patients_with(events, "phase_start", "allogeneic-hsct")


def _transplanted(events: pd.DataFrame) -> set[int]:
    """Patients with a transplant dose record."""
    return _patients_with(events, "dose", "allogeneic_hsct")


def _run(probability: float, n: int, seed: int) -> leukosim.TrialResult:
    values = leukosim.default_parameters().replace(hsct_access_probability=probability)
    return leukosim.simulate_trial("aall1331", n, seed=seed, parameters=values, trajectory_patients=0)


def test_scheduled_transplants_go_ahead_at_the_access_probability() -> None:
    result = _run(0.6, 600, 4)
    patients, events = result.patients, result.events
    reached = _reached(events)
    assert len(reached) > 200
    transplanted = set(patients.loc[patients["hsct"].astype(bool), "patient_id"])
    assert transplanted <= reached  # nobody is transplanted without reaching the transplant phase
    share = len(transplanted) / len(reached)
    # binomial 99.9% band around 0.6 (a patient who dies on the transplant day would lower it slightly)
    assert abs(share - 0.6) < 3.3 * np.sqrt(0.6 * 0.4 / len(reached))
    assert _transplanted(events) == transplanted  # no transplant dose record for patients without access


def test_transplant_access_is_monotone_in_the_probability() -> None:
    """Common random numbers: raising the probability only adds transplants, never removes one."""
    events = {probability: _run(probability, 200, 8).events for probability in (0.5, 0.9)}
    assert _transplanted(events[0.5]) & _reached(events[0.9]) <= _transplanted(events[0.9])
    assert len(_transplanted(events[0.9])) > len(_transplanted(events[0.5]))
