"""Normal B lineage: marrow CD19+ precursors and mature B cells. B cells are CD19 and CD22 antigen
(they drive CAR-T persistence and cytokine release) and the B-cell aplasia read-out."""

from __future__ import annotations

from .parameter import Parameter

PARAMETERS = (
    Parameter("b_precursors_per_kg", 3.6e8, "cells/kg",
              "[D] Hosseini 2020 Suppl. T2: BM CD19+ 5e7/mL x 500 mL per 70 kg [P]", False,
              "steady-state marrow B precursors per kg"),
    Parameter("b_maturation_rate", 0.1, "1/day", "assumption: ~10-day precursor transit [U]; bounds: transit "
              "3-20 days, which with the precursor pool and mature B-cell lifetime keeps the steady-state blood B "
              "count at 290-1,730/uL (one count for every age), within the age-dependent range of healthy "
              "children (CD19+ cells fall with age from infancy; Shearer 2003 J Allergy Clin Immunol 112:973 [P])",
              True, "maturation of marrow precursors to mature B cells (it also sets the normal mature B pool: "
              "maturation x precursors / death)", bounds=(0.05, 0.3)),
    Parameter("b_precursor_apoptosis", 0.02, "1/day", "Hosseini 2020 Suppl. T2 kBapop [P]", False,
              "apoptosis of B precursors"),
    Parameter("b_mature_death", 1.0 / 60.0, "1/day", "Leon-Triana 2021 tau_B = 60 d [S]", False,
              "death rate of mature B cells"),
    Parameter("b_blood_fraction", 0.02, "-", "[D] normal pediatric PB B ~500/uL over whole-body B pool [U]", False,
              "fraction of mature B cells in peripheral blood"),
    Parameter("blood_volume_ml_per_kg", 75.0, "mL/kg", "standard pediatric estimate 70-80 mL/kg [U]", False,
              "circulating blood volume"),
)
