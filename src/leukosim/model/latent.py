"""Population laws of the latent patient features no trial measures: the pre-existing shares of antigen-negative
subclones, T-cell fitness and chemosensitivity.

A protocol describes who enrolled (age, blasts, WBC, prior therapy); the laws of these latent features are
population hyperparameters of the model, shared by every protocol of a disease stage and moved by calibration
(model_literature.md §9.3: "pre-existing CD19- fraction ... calibrate: yes"). Shares are logit-normal, fitness
and chemosensitivity log-normal with median 1 for newly diagnosed disease (the reference) and truncated to
[0.1, 10]. A protocol may still state a law explicitly (a sensitivity analysis); bundled protocols do not.
"""

from __future__ import annotations

from .parameter import Parameter

#: logit SD of a log-uniform law over four decades (4 ln 10 / sqrt 12), the previous assumption's spread
_FOUR_DECADES_SD = 2.66

PARAMETERS = (
    Parameter("preexisting_cd19_negative_median", 1.0e-10, "-", "assumption [U]: model_literature §9.3 asks for "
              "calibration (start 1e-6-1e-3; lower values reproduce the CD19- relapse share with phenotype "
              "switching)", True, "median pre-existing CD19- share of blasts at enrollment (logit-normal)",
              bounds=(1.0e-13, 1.0e-3)),
    Parameter("preexisting_cd19_negative_logit_sd", _FOUR_DECADES_SD, "logit", "assumption [U]: four decades",
              False, "logit SD of the pre-existing CD19- share"),
    Parameter("preexisting_cd22_low_median", 0.01, "-", "assumption [U]: CD22 is expressed by most blasts in "
              "60-90% of B-ALL (Lanza 2020 [P]); the share with too little CD22 for inotuzumab is not measured",
              True, "median pre-existing CD22-low share of blasts at enrollment (logit-normal)",
              bounds=(1.0e-7, 0.2)),
    Parameter("preexisting_cd22_low_logit_sd", 2.0, "logit", "assumption [U]", False,
              "logit SD of the pre-existing CD22-low share"),
    Parameter("preexisting_lineage_switch_median", 1.0e-11, "-", "assumption [U]: lineage switch is ~7% of "
              "relapses after CD19-directed therapy, KMT2A-linked (model_literature §1.4 [P])", True,
              "median pre-existing lineage-switch (double-negative) share of blasts (logit-normal)",
              bounds=(1.0e-14, 1.0e-5)),
    Parameter("preexisting_lineage_switch_logit_sd", _FOUR_DECADES_SD, "logit", "assumption [U]: four decades",
              False, "logit SD of the pre-existing lineage-switch share"),
    Parameter("t_cell_fitness_relapsed_median", 0.8, "-", "assumption [U]; direction: prior therapy depletes "
              "naive and memory T cells (lower CAR-T expansion in heavily pretreated patients, Finney 2019 [P])",
              True, "median T-cell fitness of relapsed or refractory disease (newly diagnosed = 1)",
              bounds=(0.3, 1.5)),
    Parameter("t_cell_fitness_cv", 0.5, "-", "assumption [U]", True,
              "coefficient of variation of T-cell fitness (log-normal, truncated to [0.1, 10])",
              bounds=(0.1, 1.5)),
    Parameter("chemosensitivity_cv_newly_diagnosed", 0.5, "-", "assumption [U]: sets the spread of day-33 and "
              "day-78 MRD (AIEOP-BFM 2000 risk groups)", True,
              "coefficient of variation of chemosensitivity in newly diagnosed disease (log-normal, median 1)",
              bounds=(0.1, 2.0)),
    Parameter("chemosensitivity_cv_relapsed", 0.6, "-", "assumption [U]", True,
              "coefficient of variation of chemosensitivity in relapsed disease around the stage's typical value "
              "(chemosensitivity_relapsed)", bounds=(0.1, 2.0)),
)
