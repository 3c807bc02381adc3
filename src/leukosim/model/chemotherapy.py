"""Chemotherapy as block-wise kill: each regimen of a protocol phase kills leukemia (scaled by the
patient's chemosensitivity), T cells, B cells and normal haematopoiesis at constant rates while it runs,
and raises the hazard of death from infection. Lymphodepleting agents (fludarabine, cyclophosphamide)
act on the day of each dose, in proportion to the dose in mg/m2.

The patient's chemosensitivity is the one measured by the response to induction (glucocorticoid,
vincristine, anthracycline, asparaginase: the ``INDUCTION_CLASS`` regimens); on the other regimens and agents
(antimetabolites, alkylators) it applies raised to ``chemosensitivity_shared_exponent`` and times a patient's
factor of its own (log SD ``chemosensitivity_other_sd``).

The regimens are the BFM blocks of model_literature.md §9.2, each with its own kill: prednisone prephase,
induction (protocol IA), ``consolidation`` (protocol IB: cyclophosphamide, cytarabine, mercaptopurine),
``high_dose_methotrexate`` (protocol M), reinduction (protocol II), high-risk or relapse blocks, maintenance."""

from __future__ import annotations

from .parameter import Parameter

EFFECTS = ("leukemia_kill", "t_cell_kill", "b_cell_kill", "marrow_kill", "infection_hazard")
AGENTS = ("fludarabine", "cyclophosphamide")

# leukemia, T, B, marrow kill (1/day); infection death hazard (1/day)
_REGIMEN_VALUES = {
    "prephase": (0.30, 0.05, 0.20, 0.02, 1.0e-4),
    "induction": (0.38, 0.05, 0.20, 0.10, 4.0e-4),
    "consolidation": (0.20, 0.05, 0.10, 0.10, 2.0e-4),
    "high_dose_methotrexate": (0.20, 0.05, 0.10, 0.10, 2.0e-4),  # protocol M: protocol IB's values [U]
    "reinduction": (0.30, 0.05, 0.15, 0.10, 3.0e-4),
    "intensive_block": (0.45, 0.10, 0.20, 0.20, 1.0e-3),
    "maintenance": (0.09, 0.01, 0.02, 0.01, 2.0e-5),
}
_REGIMEN_SOURCES = {
    "leukemia_kill": "[D] 4-5 logs in 33 days of induction above net growth 0.07/day (model_literature §1.2); "
                     "other blocks scaled by intensity [U]",
    "t_cell_kill": "assumption [U]",
    "b_cell_kill": "assumption: steroid/antimetabolite B-precursor toxicity [U]",
    "marrow_kill": "assumption [U]",
    "infection_hazard": "assumption: ~1-3% infectious deaths per intensive block (AALL1331 T3 context) [U]",
}
_UNITS = {"infection_hazard": "1/day"}


def _bounds(effect: str, value: float) -> tuple[float, float] | None:
    """Infection hazards may fall tenfold but rise at most threefold from their assumed values: a calibration
    otherwise buys early deaths where the mechanism has none to give (it had taken the fludarabine hazard up
    81-fold, 10% deaths within three days of lymphodepletion; toxic deaths of Flu/Cy are rare)."""
    return (value / 10.0, value * 3.0) if effect == "infection_hazard" else None


#: Regimens a protocol may name (the schema's ``regimen`` values must match).
REGIMENS = tuple(_REGIMEN_VALUES)
#: Regimens whose kill follows the induction response: those built on the induction drugs (glucocorticoid,
#: vincristine, anthracycline, asparaginase) and protocol IB (``consolidation``), which BFM gives straight after
#: IA as the second half of its induction, protocol I. Without it, IB kills with the other-class sensitivity and
#: the day-78 MRD of AIEOP-BFM 2000 selects patients who relapse within weeks (README, calibration notes).
INDUCTION_CLASS = ("prephase", "induction", "consolidation", "reinduction")

# per reference dose on the day of administration: leukemia, T, B, marrow kill (1/day); infection hazard
_AGENT_VALUES = {
    "fludarabine": (30.0, (0.10, 1.20, 1.20, 0.20, 1.0e-4)),
    "cyclophosphamide": (500.0, (0.40, 0.80, 0.80, 0.50, 1.0e-4)),
}

PARAMETERS = tuple(
    Parameter(f"chemo_{regimen}_{effect}", value, _UNITS.get(effect, "1/day"), _REGIMEN_SOURCES[effect],
              True, f"{effect.replace('_', ' ')} during a {regimen.replace('_', ' ')} block",
              bounds=_bounds(effect, value))
    for regimen, values in _REGIMEN_VALUES.items()
    for effect, value in zip(EFFECTS, values)
) + tuple(
    Parameter(f"{agent}_{effect}", value, "1/day",
              f"assumption: per {reference:g} mg/m2 dose on its day; Flu/Cy lymphodepletion (Kymriah label) [U]",
              True, f"{effect.replace('_', ' ')} per reference dose of {agent}", bounds=_bounds(effect, value))
    for agent, (reference, values) in _AGENT_VALUES.items()
    for effect, value in zip(EFFECTS, values)
) + tuple(
    Parameter(f"{agent}_reference_dose", reference, "mg/m2", "Kymriah label lymphodepletion dose [P]", False,
              f"reference daily dose of {agent}")
    for agent, (reference, _) in _AGENT_VALUES.items()
) + (
    Parameter("chemosensitivity_shared_exponent", 1.0, "-", "assumption [U]: 1 = one sensitivity to every drug "
              "class; direction: in vitro resistance of childhood ALL is drug-class specific (relapsed blasts "
              "resist prednisolone 357x but other drugs 0.8-1.9x, Klumper 1995 Blood 86:3861 [P])", True,
              "exponent of the patient's chemosensitivity on the regimens outside the induction class and on "
              "lymphodepleting agents (0: the induction response says nothing about them)", bounds=(0.05, 1.0)),
    Parameter("chemosensitivity_other_sd", 0.1, "log", "assumption [U]: near 0, the induction response predicts "
              "the rest; direction: drug-resistance mutations (NT5C2, PRPS1, NR3C1) arise during therapy in 65% "
              "of early relapses (Li 2020 Blood 135:41, abstract [P]) and NT5C2 variants appear only at relapse "
              "(Waanders 2020 Blood Cancer Discov 1:96, abstract [P]); 83% of the events of AIEOP-BFM ALL 2000 "
              "were in its MRD-SR and MRD-IR groups ([D] from S60, calibration_targets.md)", True,
              "SD of a log-normal factor, median 1, on the chemosensitivity to the regimens outside the induction "
              "class that the induction response does not predict", bounds=(0.01, 1.5)),
)
