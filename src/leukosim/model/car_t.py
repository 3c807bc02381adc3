"""CD19 CAR-T cells: effector, memory and exhausted pools with antigen-driven expansion (normal B
cells count as antigen), homeostatic space opened by lymphodepletion, and saturating kill of CD19+
cells (structure: model_literature.md §9.2; rates constrained by Stein 2019 and Kimmel 2021)."""

from __future__ import annotations

from .parameter import Parameter

PARAMETERS = (
    Parameter("car_expansion_rate", 0.94, "1/day",
              "[D] Stein 2019 CPT:PSP 8:285 rho = ln(3900)/9.3 = 0.89 plus exhaustion 0.05 [S]; taking Stein's "
              "typical patient as T-cell fitness 1 is an assumption [U]", True,
              "maximal antigen-driven effector proliferation at T-cell fitness 1 (the product is made from the "
              "patient's T cells, so it scales with the t_cell_fitness covariate)", iiv_cv=0.35, bounds=(0.3, 3.0)),
    Parameter("car_contraction_rate", 0.16, "1/day", "Stein 2019 alpha (t1/2 4.3 d) [S]", True,
              "effector contraction rate once antigen is cleared (scaled by 1 - antigen signal)", iiv_cv=0.5),
    Parameter("car_memory_formation", 0.007, "1/day", "[D] Stein 2019 F_B = 0.0079 at Tmax [S]", True,
              "effector to memory differentiation", iiv_cv=0.5),
    Parameter("car_memory_decay", 0.0032, "1/day", "Stein 2019 beta (t1/2 217 d) [S]", True,
              "memory pool decay", iiv_cv=0.5),
    Parameter("car_memory_reactivation", 0.05, "1/day", "assumption (Kirouac/Liu 2023 structure) [U]", True,
              "antigen-driven return of memory cells to the effector pool"),
    Parameter("car_exhaustion_rate", 0.05, "1/day", "assumption (Kirouac/Liu 2023 structure) [U]", True,
              "antigen-driven exhaustion of effectors"),
    Parameter("car_exhausted_death", 0.1, "1/day", "assumption [U]", True, "death of exhausted CAR-T cells"),
    Parameter("car_antigen_ec50", 1.0e10, "cells", "none: Kirouac TK50 not obtained; calibrate [U]", True,
              "CD19+ cells for half-maximal expansion signal", bounds=(1e7, 1e12)),
    Parameter("car_kill_max", 2.25, "1/day", "[D] Leon-Triana 2021 B-ALL mass-action kill 4.5e-11/cell/day x "
              "5e10 CAR-T at peak [S]; Kimmel 2021 LBCL gamma_B 1.15 [P]", True,
              "maximal CAR-T kill rate of CD19+ cells", bounds=(0.2, 10.0)),
    Parameter("car_kill_half_saturation", 5.0e10, "cells", "[D] car_kill_max / Leon-Triana mass-action kill "
              "4.5e-11 per CAR-T cell per day [S]", True,
              "effector CAR-T count for half-maximal kill", bounds=(1e8, 1e12)),
    Parameter("lymphocyte_space_per_kg", 7.0e9, "cells/kg", "assumption: 1.4x the homeostatic T pool [U]", True,
              "homeostatic lymphocyte niche shared by T and CAR-T cells (Kimmel-type competition)"),
    Parameter("car_vector_copies", 1.0, "copies/cell", "assumption: typical lentiviral VCN ~1 [U]", False,
              "transgene copies per CAR-T cell"),
    Parameter("car_blood_fraction", 0.02, "-", "assumption: ~2% of lymphocytes circulate [U]", False,
              "fraction of CAR-T cells in peripheral blood"),
    Parameter("car_rejection_rate", 0.02, "1/day", "assumption: host immune rejection of the murine-scFv CAR "
              "(transgene immunogenicity; lymphodepletion defers it until host T cells return) [U]", True,
              "loss rate of every CAR-T pool at a fully reconstituted host T-cell pool (scaled by resting T cells "
              "/ normal)", iiv_cv=1.5, bounds=(1e-4, 1.0)),
    Parameter("car_viable_fraction", 0.5, "-", "assumption: infused cells that engraft [U]", True,
              "fraction of infused CAR+ viable T cells that engraft as effectors"),
)
