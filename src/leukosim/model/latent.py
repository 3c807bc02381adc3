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

#: CD22-low share of blasts in a leukemia with partial CD22 expression, assumption [U]: from half (CD22 not on most
#: blasts) to 80% (a CD22-directed trial enrols leukemias with CD22 on at least 20% of blasts, AALL1621).
CD22_PARTIAL_LOW_SHARE = (0.5, 0.8)
#: logit SD of a log-uniform law over four decades (4 ln 10 / sqrt 12), the previous assumption's spread
_FOUR_DECADES_SD = 2.66


def _share_law(clone: str, median: float, bounds: tuple[float, float], source: str, logit_sd: float,
               description: str) -> tuple[Parameter, Parameter]:
    """The calibratable median and logit SD of one pre-existing subclone share (logit-normal). The SD is
    identifiable apart from the median: a wide law gives some patients a subclone large enough for therapy that
    spares it to fail outright (non-response) and many none at all (cure without antigen-negative relapse),
    a narrow one gives everyone a small subclone (response, then late antigen-negative relapse)."""
    return (
        Parameter(f"preexisting_{clone}_median", median, "-", source, True,
                  f"median pre-existing {description} share of blasts at enrollment (logit-normal)", bounds=bounds),
        Parameter(f"preexisting_{clone}_logit_sd", logit_sd, "logit", "assumption [U]", True,
                  f"logit SD of the pre-existing {description} share", bounds=(0.5, 8.0)),
    )


PARAMETERS = (
    *_share_law("cd19_negative", 1.0e-10, (1.0e-13, 1.0e-3), "assumption [U]: not measured, calibrate "
                "(model_literature §1.4, §9.3 [P]); the previous protocols' log-uniform 1e-12-1e-8, at its "
                "geometric middle", _FOUR_DECADES_SD, "CD19-"),
    *_share_law("cd22_low", 0.01, (1.0e-7, 0.2), "assumption [U]: CD22 is expressed by most blasts in 60-90% of "
                "B-ALL (Lanza 2020 [P]); the share with too little CD22 for inotuzumab is not measured", 2.0,
                "CD22-low"),
    Parameter("cd22_partial_fraction", 0.2, "-", "Lanza 2020 [P] (as for preexisting_cd22_low_median): CD22 is "
              "expressed by most blasts in 60-90% of B-ALL, so in 10-40% it is not", True,
              "share of leukemias expressing CD22 on only part of their blasts: their CD22-low share is uniform on "
              "CD22_PARTIAL_LOW_SHARE, the others' follows the logit-normal law", bounds=(0.01, 0.6)),
    *_share_law("lineage_switch", 1.0e-11, (1.0e-14, 1.0e-5), "assumption [U]: lineage switch is 7.2% of relapses "
                "after CD19 CAR-T (Lamble 2023, model_literature §1.4 [P]); the pre-existing share is not "
                "measured", _FOUR_DECADES_SD, "lineage-switch (double-negative)"),
    Parameter("t_cell_fitness_relapsed_median", 0.8, "-", "assumption [U]: prior therapy taken to leave T cells "
              "less fit than at diagnosis (not measured in the reference set)", True,
              "median T-cell fitness of relapsed or refractory disease (newly diagnosed = 1)", bounds=(0.3, 1.5)),
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
