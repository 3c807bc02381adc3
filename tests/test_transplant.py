"""Transplant access: a scheduled allogeneic HSCT goes ahead for the share ``hsct_access_probability`` of the
patients who reach it (donor found, fit in time), decided by each patient's own uniform draw."""

from __future__ import annotations

import numpy as np

import leukosim

N = 600


def _transplant_phase_reached(events, arm_patients) -> set[int]:
    reached = events[(events["event"] == "phase_start") & (events["detail"] == "allogeneic-hsct")]
    return set(reached["patient_id"]) & set(arm_patients)


def test_scheduled_transplants_go_ahead_at_the_access_probability() -> None:
    values = leukosim.default_parameters().replace(hsct_access_probability=0.6)
    result = leukosim.simulate_trial("aall1331", N, seed=4, parameters=values, trajectory_patients=0)
    patients, events = result.patients, result.events
    reached = _transplant_phase_reached(events, patients["patient_id"])
    assert len(reached) > 200
    transplanted = set(patients.loc[patients["hsct"].astype(bool), "patient_id"])
    assert transplanted <= reached  # nobody is transplanted without reaching the transplant phase
    share = len(transplanted) / len(reached)
    # binomial 99.9% band around 0.6 (a patient who dies on the transplant day would lower it slightly)
    assert abs(share - 0.6) < 3.3 * np.sqrt(0.6 * 0.4 / len(reached))
    doses = events[(events["event"] == "dose") & (events["detail"] == "allogeneic_hsct")]
    assert set(doses["patient_id"]) == transplanted  # no transplant dose record for patients without access


def test_transplant_access_is_monotone_in_the_probability() -> None:
    """Common random numbers: raising the probability only adds transplants, never removes one."""
    runs = {}
    for probability in (0.5, 0.9):
        values = leukosim.default_parameters().replace(hsct_access_probability=probability)
        runs[probability] = leukosim.simulate_trial("aall1331", 200, seed=8, parameters=values,
                                                    trajectory_patients=0).events
    reached = {p: set(e.loc[(e["event"] == "phase_start") & (e["detail"] == "allogeneic-hsct"), "patient_id"])
               for p, e in runs.items()}
    dosed = {p: set(e.loc[(e["event"] == "dose") & (e["detail"] == "allogeneic_hsct"), "patient_id"])
             for p, e in runs.items()}
    assert dosed[0.5] & reached[0.9] <= dosed[0.9]
    assert len(dosed[0.9]) > len(dosed[0.5])
