"""Cytokines and toxicity: IL-6 in quasi-steady state (half-life 20 min, Hosseini 2020) produced by
CAR-T killing and T-cell activation (blinatumomab-engaged T cells and antigen-driven CAR-T
proliferation). CAR-T cells kill by target-cell pyroptosis, which activates macrophages to release
IL-6; endogenous T cells, which blinatumomab redirects, carry too little granzyme B for it (Liu 2020
Sci Immunol 5:eaax7969), so blinatumomab's IL-6 comes from T-cell activation (Hosseini 2020). A
symptom layer maps IL-6 to fever, hypotension, hypoxia and neurological signs that ``observe.grading``
grades by ASTCT 2019; SOS/VOD hazard from sinusoidal injury and transplant; death hazards after progression."""

from __future__ import annotations

import math

from ..kernel import kernel
from .parameter import Parameter

PARAMETERS = (
    Parameter("il6_baseline", 3.0, "pg/mL", "assumption: normal serum IL-6 < 7 pg/mL [U]", False,
              "baseline serum IL-6"),
    Parameter("il6_per_kill", 3.0e-7, "pg/mL per (cells/day/kg)", "none: Teachey 2016 links peak IL-6 to CRS; "
              "calibrate to CRS grades [U]; CAR-T kills only: target pyroptosis drives macrophage IL-6, and "
              "the granzyme B of CAR-T cells, not of endogenous T cells, induces it (Liu 2020 Sci Immunol "
              "5:eaax7969, abstract [P])", True, "IL-6 per target cell killed by CAR-T, per kg"),
    Parameter("il6_per_activation", 2.0e-9, "pg/mL per (cells/day/kg)", "Hosseini 2020 (IL-6 from activated T "
              "cells) structure; value calibrate [U]", True,
              "IL-6 per T cell activated (by blinatumomab, or CAR-T proliferating on antigen), per kg"),
    Parameter("crs_fever_il6", 30.0, "pg/mL", "assumption [U]; bounds: above normal IL-6 (< 7 pg/mL)", True,
              "IL-6 at which fever starts", bounds=(10.0, 300.0)),
    Parameter("crs_hypotension_il6", 300.0, "pg/mL", "assumption [U]", True,
              "IL-6 for hypotension needing fluids (one vasopressor at crs_sign_level_ratio times it, multiple "
              "vasopressors at its square)", bounds=(50.0, 5000.0)),
    Parameter("crs_hypoxia_il6", 400.0, "pg/mL", "assumption [U]", True,
              "IL-6 for low-flow oxygen (high-flow and positive pressure at crs_sign_level_ratio and its square "
              "times it)", bounds=(50.0, 5000.0)),
    Parameter("crs_sign_level_ratio", 4.0, "-", "assumption [U]: how steeply shock and hypoxia deepen with "
              "IL-6; bounds: from a factor 1.5 to 8 per level", True,
              "effective IL-6 ratio between successive levels of hypotension (fluids, one vasopressor, multiple "
              "vasopressors) and of hypoxia (low-flow, high-flow, positive pressure)", bounds=(1.5, 8.0)),
    Parameter("crs_susceptibility_sd", 0.8, "log", "assumption: between-patient spread of CRS severity [U]; "
              "bounds: at most a factor ~4.5 per SD", True, "SD of the patient's log susceptibility to CRS signs",
              bounds=(0.1, 1.5)),
    Parameter("crs_fatal_il6_factor", 8.0, "-", "assumption: fatal CRS beyond refractory grade 4 [U]", True,
              "IL-6 multiple of the multiple-vasopressor level at which CRS is fatal"),
    Parameter("tocilizumab_effect", 0.25, "-", "assumption: IL-6R blockade; no effect on CAR expansion "
              "(Stein 2019 F_toci) [U]; bounds: from near-abolition to none", True,
              "factor on the effective IL-6 signal after tocilizumab", bounds=(0.05, 1.0)),
    Parameter("steroid_effect", 0.5, "-", "assumption [U]; bounds: from near-abolition to none", True,
              "factor on the effective IL-6 and neuro signal after corticosteroids", bounds=(0.05, 1.0)),
    Parameter("icans_il6", 400.0, "pg/mL", "assumption: ICANS follows CRS (ELIANA G3 neuro 32% with G4 CRS) [U]",
              True, "effective IL-6 at which encephalopathy starts"),
    Parameter("icans_susceptibility_sd", 1.0, "log", "assumption [U]; bounds as crs_susceptibility_sd", True,
              "SD of the patient's log susceptibility to neurotoxicity", bounds=(0.1, 1.5)),
    Parameter("sos_hazard_per_injury", 1.0e-3, "1/day", "none: calibrate to INO-VATE VOD 14% [U]", True,
              "SOS/VOD hazard per unit sinusoidal injury"),
    Parameter("sos_transplant_factor", 10.0, "-", "assumption: conditioning multiplies SOS risk (INO-VATE 22% "
              "post-HSCT) [U]", True, "SOS hazard multiplier in the 21 days after HSCT conditioning"),
    Parameter("sos_transplant_baseline", 5.0e-4, "1/day", "assumption: ~1% SOS after HSCT without InO [U]", True,
              "SOS hazard in the 21 days after HSCT conditioning without prior injury"),
    Parameter("sos_fatality", 0.29, "-", "INO-VATE 5 of 17 post-HSCT VOD fatal [P]", True,
              "probability that an SOS/VOD episode is fatal"),
    Parameter("post_progression_death_rate", 0.0019, "1/day", "[D] median OS 11.9 months after post-CAR relapse "
              "(Lamble 2023) [P]; bounds: median OS 6-24 months", True,
              "death hazard after relapse or refractory disease (off protocol); with a Weibull shape other than 1, "
              "ln 2 / median survival", bounds=(0.00095, 0.0038)),
    Parameter("post_progression_survival_shape", 1.0, "-", "assumption [U]: 1 is the exponential law; below 1 the "
              "death hazard falls with time since progression (refractory disease dies early, salvage and HSCT "
              "leave long-term survivors)", True,
              "Weibull shape of survival after relapse or refractory disease (median ln 2 / "
              "post_progression_death_rate)", bounds=(0.3, 1.0)),
    Parameter("post_progression_refractory_factor", 1.0, "-", "assumption [U]: disease that never remits on the "
              "protocol progresses from a high burden and dies sooner than a relapse detected in remission (the "
              "median OS of 11.9 months is after relapse, Lamble 2023 [P]); 1 = no difference; bounds: median "
              "down to a sixth", True,
              "refractory disease (never in remission) survives progression this many times shorter than a "
              "relapse: its times to death are those after relapse divided by the factor", bounds=(1.0, 6.0)),
    Parameter("post_progression_cure_newly_diagnosed", 0.36, "-", "COG relapse cohort 1988-2002: 5-year OS 36% "
              "after relapse from frontline therapy (S66, calibration_targets.md) [S]", True,
              "fraction of patients who relapse from first-line therapy that salvage therapy (second-line "
              "chemotherapy, transplant) cures: never die of leukemia", bounds=(0.1, 0.6)),
    Parameter("post_progression_cure_adult_age_exponent", 1.18, "-", "[D] adults after relapse (MRC UKALL12/"
              "ECOG 2993, 609 patients): 5-year OS 12% under 20 y, 3% over 50 y (Fielding, Blood 2007;109:944, "
              "abstract [P]); (55 / 17)^-1.18 = 1/4; the power form is an assumption [U]", True,
              "power of age / 18 y dividing the post-progression cure fractions above 18 y (children: no age "
              "effect)", bounds=(0.0, 4.0)),
    Parameter("post_progression_cure_relapsed", 0.05, "-", "assumption [U]: median OS 11.9 months after relapse "
              "following CAR-T (Lamble 2023) [P] leaves few long-term survivors", True,
              "fraction of patients who relapse from, or are refractory to, therapy for relapsed disease that "
              "later salvage cures", bounds=(0.01, 0.3)),
)

# ------------------------------------------------------------------------------------ symptom layer
@kernel
def inflammatory_signal(il6: float, baseline: float, susceptibility: float, treatment: float) -> float:
    """Effective IL-6 signal (pg/mL) for the symptom layer: the patient's susceptibility and anti-cytokine
    treatment (factors) scale the excess over normal serum IL-6, never the normal level itself."""
    return baseline + max(0.0, il6 - baseline) * susceptibility * treatment


@kernel
def _level(signal: float, threshold: float, ratio: float) -> int:
    """Sign level 0-3: level n needs ``ratio**(n - 1)`` times the first level's threshold."""
    level = 0
    bound = threshold
    while level < 3 and signal >= bound:
        level += 1
        bound *= ratio
    return level


@kernel
def crs_signs(effective_il6: float, fever_il6: float, hypotension_il6: float, hypoxia_il6: float,
              level_ratio: float) -> tuple[bool, int, int]:
    """Fever, hypotension level (0 none .. 3 multiple vasopressors) and hypoxia level (0 none ..
    3 positive pressure) at an effective IL-6 signal (pg/mL x patient susceptibility x treatment); each
    level needs ``level_ratio`` times the signal of the one below."""
    return (effective_il6 >= fever_il6, _level(effective_il6, hypotension_il6, level_ratio),
            _level(effective_il6, hypoxia_il6, level_ratio))


@kernel
def neuro_signs(effective_il6: float, icans_il6: float) -> tuple[int, int, int, bool, int]:
    """Encephalopathy (ICE-equivalent impairment 0-10 and CAPD-equivalent 0-32), consciousness level
    (0-4), seizure level (0-2), motor weakness and cerebral oedema level (0-2) from the effective IL-6
    signal: each doubling beyond the ICANS threshold deepens the encephalopathy (assumption [U])."""
    if effective_il6 < icans_il6:
        return 0, 0, 0, False, 0
    severity = math.log2(effective_il6 / icans_il6)  # 0 at threshold
    impairment = min(10, 1 + int(2.0 * severity))
    consciousness = min(4, 1 + int(severity / 1.5))
    seizure = 2 if severity >= 6.0 else (1 if severity >= 4.0 else 0)
    edema = 2 if severity >= 7.0 else 0
    return impairment, consciousness, seizure, severity >= 7.0, edema
