"""Allogeneic haematopoietic stem-cell transplant: conditioning kill, donor engraftment, graft-versus-
leukemia pressure on every leukemic class, and transplant-related mortality."""

from __future__ import annotations

from .parameter import Parameter

PARAMETERS = (
    Parameter("hsct_access_probability", 0.85, "-", "assumption: a scheduled allograft goes ahead when a donor is "
              "found and the patient is fit in time [U]", True,
              "probability that a patient reaching a scheduled allogeneic HSCT receives it", bounds=(0.5, 1.0)),
    Parameter("hsct_conditioning_leukemia_log10_kill", 3.0, "log10", "assumption: myeloablative TBI-based "
              "conditioning [U]", True, "log10 kill of every leukemic class by conditioning"),
    Parameter("hsct_conditioning_lymphocyte_log10_kill", 3.0, "log10", "assumption [U]", False,
              "log10 kill of recipient T, B and CAR-T cells by conditioning"),
    Parameter("hsct_engraftment_fraction", 0.01, "-", "assumption: donor marrow at 1% of capacity on day 0 [U]",
              False, "normal haematopoiesis and lymphocytes right after graft infusion, as a fraction of normal"),
    Parameter("gvl_kill_max", 0.08, "1/day", "none: calibrate to post-HSCT relapse [U]", True,
              "maximal graft-versus-leukemia kill rate", iiv_cv=0.5),
    Parameter("gvl_onset_days", 60.0, "day", "assumption: donor T-cell reconstitution [U]", True,
              "time constant of GVL onset"),
    Parameter("trm_hazard", 0.0013, "1/day", "[D] assumption: ~12% TRM at 1 y in pediatric ALL [U]", True,
              "initial transplant-related mortality hazard", iiv_cv=0.5),
    Parameter("trm_adult_age_exponent", 1.0, "-", "assumption [U] on the form and value (1: the TRM hazard doubles "
              "from 18 to 36 y); direction: adolescents and young adults (13-30 y) had a 1-year TRM hazard ratio of "
              "2.23 (1.01-4.90) against children under 13 after myeloablative allografts for B-ALL (PMC3530019 "
              "abstract [P])", True,
              "power of age / 18 y on the TRM hazard above 18 y (children: no age effect)", bounds=(0.0, 3.0)),
    Parameter("trm_decay_days", 100.0, "day", "assumption [U]", True, "time constant of TRM hazard decay"),
    Parameter("trm_second_transplant_factor", 2.0, "-", "assumption: second allograft carries higher TRM [U]", True,
              "multiplier on TRM hazard after a prior transplant"),
)
