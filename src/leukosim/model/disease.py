"""Leukemia in four antigen classes competing for marrow space with normal haematopoiesis.

Classes: CD19+CD22+ (bulk), CD19- (CD19 loss / epitope loss), CD22-low, and double-negative
(lineage switch). Per-capita birth and death follow a linear birth-death process so the
extinction layer (``engine/extinction.py``) can use the same rates (model_literature.md §1, §6, §9).
"""

from __future__ import annotations

import numba
import numpy as np

from .parameter import Parameter

CLASS_NAMES = ("CD19+CD22+", "CD19-", "CD22-low", "lineage-switch")
#: 1.0 where a class carries CD19 (CAR-T and blinatumomab targets) / CD22 at full density (inotuzumab).
CD19_POSITIVE = (1.0, 0.0, 1.0, 0.0)
CD22_POSITIVE = (1.0, 1.0, 0.0, 0.0)

PARAMETERS = (
    Parameter("leukemia_net_growth", 0.069, "1/day", "Br J Haematol 1997;98:999 (6.9 +/- 7.3 %/day) [P]", True,
              "untreated net expansion rate of leukemic cells", iiv_cv=0.6, bounds=(0.005, 0.3)),
    Parameter("leukemia_death_rate", 0.04, "1/day", "Br J Haematol 1997;98:999 (apoptosis ~4 %/day) [P]", False,
              "baseline per-capita death (apoptosis) of leukemic cells"),
    Parameter("marrow_cells_per_kg", 1.04e10, "cells/kg", "Harrison 1962 J Clin Pathol 15:254 (59Fe method) [P]",
              False, "total nucleated marrow cells per kg body weight at 100% cellularity"),
    Parameter("chemosensitivity_relapsed", 0.5, "-", "assumption [U]; direction: relapsed blasts resist "
              "glucocorticoids (357x prednisolone) and other drugs 0.8-1.9x in vitro (Klumper 1995 Blood 86:3861) "
              "[P]", True,
              "typical chemosensitivity of relapsed or refractory disease relative to newly diagnosed (the "
              "population's chemosensitivity law is relative to its disease stage)", bounds=(0.05, 1.0)),
    Parameter("chemosensitivity_late_relapse", 0.8, "-", "assumption [U]; direction: late first relapses "
              "(>= 6 months after frontline therapy) reach second remission and survive more often than early "
              "ones (ALL-REZ BFM 87 15-year pEFS 0.44 vs 0.18, S67), and relapsed blasts resist drugs in vitro "
              "(Klumper 1995 Blood 86:3861) [P]", True,
              "typical chemosensitivity of a late first relapse relative to newly diagnosed disease (early "
              "relapses and refractory disease: chemosensitivity_relapsed)", bounds=(0.05, 1.5)),
    Parameter("t_cell_kill_sensitivity_sd", 0.7, "log", "assumption [U]; direction: leukemia-intrinsic resistance "
              "to T-cell killing shared by blinatumomab and CAR-T (prior blinatumomab non-response predicts "
              "post-CAR failure, Myers JCO 2022 [P]); non-responders expand CAR-T nearly as well as responders "
              "(Cmax ratio 1.74, Mueller 2017 [P]); upper bound: a factor 2,500 between the 2.5th and 97.5th "
              "centiles (1.0 allowed 50; the spread is not measured)", True,
              "SD of the patient's log sensitivity of leukemic cells to T-cell-mediated killing (CAR-T and "
              "blinatumomab; median 1)", bounds=(0.05, 2.0)),
    Parameter("t_cell_resistant_fraction", 0.15, "-", "assumption [U]; direction: primary resistance to CD19 "
              "CAR-T is 10-20% of ALL; leukemias with impaired death-receptor signalling resist CAR-T killing "
              "whatever their antigen and drive the CAR-T cells into dysfunction, and low death-receptor gene "
              "expression went with worse survival in two CAR-T trials (Singh 2020 Cancer Discov 10:552, "
              "abstract [P]); the share of such leukemias is not measured", True,
              "share of patients whose leukemia resists T-cell-mediated killing (a Bernoulli latent feature)",
              bounds=(0.005, 0.5)),
    Parameter("t_cell_resistant_kill_factor", 0.01, "-", "assumption [U]: loss of death-receptor signalling "
              "let ALL progress rapidly despite CAR-T (Singh 2020 Cancer Discov 10:552, abstract [P]); the "
              "residual kill is not measured", True,
              "factor on the T-cell kill sensitivity of a resistant leukemia", bounds=(0.001, 1.0)),
    Parameter("t_cell_resistant_car_exhaustion_factor", 6.0, "-", "assumption [U]: CAR-T cells engaged by "
              "death-receptor-impaired leukemia become dysfunctional (Singh 2020 Cancer Discov 10:552 [P]) and "
              "non-responders expand them less (Cmax ratio 1.74, Mueller 2017 [P]); the factor is not measured", True,
              "factor on the CAR-T exhaustion rate in a patient whose leukemia resists T-cell killing",
              bounds=(1.0, 30.0)),
    Parameter("switch_cd19_loss", 1.0e-12, "1/day", "none: calibrate to CD19- relapse share (Lamble 2023) [U]",
              True, "rate of CD19 loss per CD19+CD22+ cell", bounds=(1e-15, 1e-6)),
    Parameter("switch_cd22_low", 1.0e-12, "1/day", "none: calibrate (CD22 modulation, Front Immunol 2023) [U]", True,
              "rate of CD22 down-modulation per CD19+CD22+ cell", bounds=(1e-15, 1e-6)),
    Parameter("switch_lineage", 1.0e-13, "1/day", "none: calibrate to 7% lineage switch (Lamble 2023) [U]", True,
              "rate of lineage switch (double-negative) per CD19+CD22+ cell", bounds=(1e-16, 1e-7)),
    Parameter("blood_to_marrow_mrd_ratio", 0.1, "-", "BCP-ALL PB MRD ~1 log below BM (cuni.cz abstract) [P]", True,
              "MRD in peripheral blood relative to marrow"),
    Parameter("normal_marrow_regrowth", 0.15, "1/day", "assumption: neutrophil recovery 2-3 weeks after a block [U]",
              True, "regrowth rate of normal haematopoiesis into free marrow space at marrow reserve 1 (the "
              "newly diagnosed median)"),
    Parameter("assessable_marrow_cellularity", 0.2, "-", "assumption [U]: response criteria need an evaluable "
              "marrow, of about 20% cellularity or more; an aplastic marrow is sampled again at recovery", False,
              "least marrow cellularity (nucleated cells / marrow_cells_per_kg x weight) against which blasts are "
              "counted: in a less cellular marrow the blast fraction is the leukemic cells over that many cells"),
    Parameter("count_recovery_fraction", 0.5, "-", "assumption: ANC >= 1000/uL ~ half of normal output [U]; "
              "bounds 0.2-0.8 [U] around the CR thresholds against normal paediatric counts (ANC 1000 of "
              "1500-8000/uL, platelets 100 of 150-450e9/L: 0.13-0.67)", True,
              "normal haematopoiesis (fraction of its capacity) that counts as count recovery (CR vs CRi)",
              bounds=(0.2, 0.8)),
    Parameter("marrow_reserve_relapsed_median", 0.5, "-", "assumption [U]; direction: prior therapy and "
              "transplant leave less marrow reserve; CRi is a quarter to over a half of responses in the "
              "relapsed trials of the calibration set (ELIANA 1 - 0.63/0.82 = 0.23, AALL1621 9 of 28 = 0.32, "
              "blinatumomab phase 1/2 1 - 0.17/0.386 = 0.56)", True,
              "median marrow reserve of relapsed or refractory disease (newly diagnosed = 1): factor on "
              "normal_marrow_regrowth", bounds=(0.05, 1.0)),
    Parameter("marrow_reserve_sd", 0.5, "log", "assumption [U]", True,
              "SD of the patient's log marrow reserve", bounds=(0.05, 1.5)),
    Parameter("marrow_failure_death_hazard", 0.003, "1/day", "[D] assumption [U] on the shape: 4 of 137 "
              "children infused with tisagenlecleucel for marrow-replacing relapse died within 30 days, before the "
              "marrow cleared: 2 of leukemia progression, 2 of cytopenic complications (cerebral haemorrhage with "
              "coagulopathy on day 15, mucormycosis on day 25) (S10 Levine JITC 2021 T1 [P]); 2.9% in ~2 weeks at "
              "~0.75 occupancy = 0.0028/day; bounds 3e-4-0.03 (0.9-59% over 30 days of full occupancy)", True,
              "death hazard from marrow failure (haemorrhage, infection) at full leukemic marrow occupancy; "
              "proportional to the occupancy and counted with the infection deaths", bounds=(3e-4, 0.03)),
    Parameter("leukemia_growth_relapsed_factor", 1.0, "-", "assumption [U]: the growth measurement "
              "(leukemia_net_growth) does not separate disease stages; relapsed disease is the part that "
              "survived therapy, and its net growth relative to newly diagnosed disease is not measured in the "
              "reference set", True,
              "net growth of relapsed or refractory leukemia relative to newly diagnosed (factor on "
              "leukemia_net_growth)", bounds=(0.5, 4.0)),
)


def marrow_cellularity(age_years: np.ndarray) -> np.ndarray:
    """Fraction of marrow space that is cellular, by age (pediatric iliac-crest series: 79.8% <2 y,
    68.6% 2-4 y, 59.1% 5-9 y, ~60% 10-18 y; 'Pediatric Bone Marrow Cellularity', scilit abstract [P]; adults:
    50% at 30-69 y, 29% at 70-79 y, Hartsock 1965 Am J Clin Pathol 43:326 as summarised by PathologyOutlines,
    'Bone marrow: age related changes' [S])."""
    age = np.asarray(age_years, dtype=np.float64)
    return np.select([age < 2, age < 5, age < 10, age < 30, age < 70], [0.798, 0.686, 0.591, 0.60, 0.50],
                     default=0.29)


@numba.njit(cache=True, inline="always", error_model="numpy")
def leukemia_birth_rate(net_growth: float, death_rate: float, occupancy: float) -> float:
    """Per-capita birth rate (1/day): intrinsic birth slowed by marrow occupancy (logistic competition)."""
    free = 1.0 - occupancy
    if free < 0.0:
        free = 0.0
    return (net_growth + death_rate) * free
