"""Endogenous T cells: resting pool with homeostatic reconstitution after lymphodepletion, and the
blinatumomab-activated pool (Hosseini et al. 2020 npj Syst Biol Appl 6:28, Suppl. Table 2)."""

from __future__ import annotations

import numba

from .parameter import Parameter

PARAMETERS = (
    Parameter("t_cells_per_kg", 5.0e9, "cells/kg", "assumption: ~3.5e11 T cells in a 70 kg adult [U]", False,
              "homeostatic whole-body T-cell pool per kg"),
    Parameter("t_homeostatic_rate", 0.17, "1/day", "Kimmel 2021 Proc R Soc B r_N [P]", True,
              "homeostatic T-cell reconstitution rate"),
    Parameter("t_marrow_fraction", 0.05, "-", "assumption: share of T cells in marrow [U]", True,
              "fraction of (activated) T cells meeting marrow targets"),
    Parameter("blin_t_activation_rate", 9.828, "1/day", "Hosseini 2020 kTact [P]", False,
              "maximal T-cell activation rate by blinatumomab"),
    Parameter("blin_vm_t", 0.9, "-", "Hosseini 2020 VmT [P]", False, "maximal activation fraction"),
    Parameter("blin_km_bt", 0.716, "-", "Hosseini 2020 KmBT_act [P]", False,
              "target:T ratio for half-maximal activation"),
    Parameter("blin_hill_bt", 1.4, "-", "Hosseini 2020 S [P]", False, "Hill coefficient on target:T ratio"),
    Parameter("blin_ec50_activation", 0.1, "ng/mL", "Hosseini 2020 KdrugactT_blin [P]", False,
              "blinatumomab concentration for half-maximal T activation"),
    Parameter("t_deactivation_rate", 0.049, "1/day", "[D] Hosseini 2020 fTadeact x kTact = 0.005 x 9.828 [P]", False,
              "return of activated T cells to the resting pool"),
    Parameter("t_activated_apoptosis", 0.061, "1/day", "Hosseini 2020 kTaapop [P]", False,
              "apoptosis of activated T cells"),
    Parameter("t_activated_proliferation", 1.474, "1/day", "[D] Hosseini 2020 fTaprolif x kTprolif = 2.106 x 0.7 [P]",
              True, "maximal proliferation of drug-engaged activated T cells"),
    Parameter("blin_kill_rate", 275.19, "1/day", "Hosseini 2020 kBkill [P]", True,
              "blinatumomab-mediated kill-rate scale"),
    Parameter("blin_blood_kill_max", 10.0, "1/day", "assumption [U], constrained by Hijazi 2018 (NHL, [P]): blood "
              "B cells depleted within 48 h at >= 5 ug/m2/day, first-order, i.e. >= 2.3/day; 10/day keeps that "
              "at 5 ug/m2/day (drug term 0.43) and fitness 0.8 once the T:B ratio saturates; lower bound 8/day: "
              "2.3 / (0.43 x 0.8) = 6.7/day before the T:B ratio saturates", True,
              "maximal blinatumomab kill rate of circulating B cells", bounds=(8.0, 100.0)),
    Parameter("blin_marrow_kill_efficiency", 0.1, "-", "Hosseini 2020 fBkill (tissue) [P]", False,
              "marrow kill efficiency (scales the marrow kill and the blood kill's E:T half-saturation; the blood "
              "kill's maximum is blin_blood_kill_max)"),
    Parameter("blin_vm_b", 0.95, "-", "Hosseini 2020 VmB [P]", False, "maximal kill fraction"),
    Parameter("blin_km_tb", 7.5, "-", "[D] Hosseini 2020 KmTB_kill 0.75 x fKmTB_kill 10 (tissue) [P]", True,
              "activated T : target ratio for half-maximal kill in marrow"),
    Parameter("blin_hill_tb", 1.027, "-", "Hosseini 2020 nkill [P]", False, "Hill coefficient on T:target ratio"),
    Parameter("blin_ec50_kill", 0.15, "ng/mL", "Hosseini 2020 KdrugB_blin [P]", False,
              "blinatumomab concentration for half-maximal kill"),
)


@numba.njit(cache=True, inline="always", error_model="numpy")
def hill(x: float, k: float, n: float) -> float:
    """x^n / (k^n + x^n) for x >= 0."""
    if x <= 0.0:
        return 0.0
    r = (x / k) ** n
    return r / (1.0 + r)
