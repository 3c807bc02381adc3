"""Individual parameters: registry values with between-patient variability, and the per-patient
quantities derived from covariates (marrow size, body-size-scaled PK, normal cell pools)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..model.disease import marrow_cellularity
from ..model.layout import D, N_PATIENT, N_REGISTRY
from ..model.registry import INDEX, PARAMETERS, ParameterSet
from .covariates import Covariates
from .streams import Stream, standard_normals

__all__ = ["individual_parameters", "lean_body_mass_kg"]

#: Stream offsets inside the "parameters" block: registry parameters use their registry index;
#: patient-level susceptibilities use the slots after the registry.
_CRS_STREAM = N_REGISTRY
_ICANS_STREAM = N_REGISTRY + 1
#: PB blasts relative to marrow blast fraction x WBC (assumption [U]) for the inotuzumab kdes covariate.
_PB_BLAST_SHARE = 0.5


def lean_body_mass_kg(weight_kg: NDArray[np.float64], height_cm: NDArray[np.float64],
                      male: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Lean body mass (kg), Janmahasatian et al. Clin Pharmacokinet 2005;44:1051."""
    bmi = weight_kg / (height_cm / 100.0) ** 2
    return np.where(male, 9270.0 * weight_kg / (6680.0 + 216.0 * bmi), 9270.0 * weight_kg / (8780.0 + 244.0 * bmi))


def individual_parameters(parameters: ParameterSet, covariates: Covariates, seed: int) -> NDArray[np.float64]:
    """Per-patient parameter matrix (patients x ``layout.N_PATIENT``): log-normal variability around each
    registry value with ``iiv_cv`` > 0, then the derived quantities named in ``layout.DERIVED_NAMES``."""
    ids = covariates.patient_id
    n = ids.size
    base = Stream.block("parameters")
    out = np.empty((n, N_PATIENT))
    typical = parameters.array()
    for index, parameter in enumerate(PARAMETERS):
        if parameter.iiv_cv > 0.0:
            omega = np.sqrt(np.log1p(parameter.iiv_cv**2))
            out[:, index] = typical[index] * np.exp(omega * standard_normals(seed, ids, base + index))
        else:
            out[:, index] = typical[index]

    def value(name: str) -> NDArray[np.float64]:
        return out[:, INDEX[name]]

    weight = covariates.weight_kg
    bsa = covariates.bsa_m2
    age = covariates.age_years
    capacity = value("marrow_cells_per_kg") * weight * marrow_cellularity(age)
    b_precursor = value("b_precursors_per_kg") * weight
    b_turnover = value("b_maturation_rate") + value("b_precursor_apoptosis")
    lbm = lean_body_mass_kg(weight, covariates.height_cm, covariates.male)
    lbm_ratio = lbm / value("ino_reference_lbm")
    pb_blasts = np.maximum(covariates.wbc_per_uL * 1e-3 * covariates.marrow_blasts_percent / 100.0
                           * _PB_BLAST_SHARE, 1e-3)  # 1e9/L
    blin_bsa = bsa / value("blin_reference_bsa")
    blin_clearance = value("blin_clearance") * blin_bsa ** value("blin_clearance_bsa_exponent")
    blin_volume = value("blin_volume") * blin_bsa
    derived = {
        "weight_kg": weight,
        "age_years": age,
        "bsa_m2": bsa,
        "marrow_capacity": capacity,
        "b_source": b_precursor * b_turnover,
        "b_precursor_normal": b_precursor,
        "b_mature_normal": value("b_maturation_rate") * b_precursor / value("b_mature_death"),
        "t_normal": value("t_cells_per_kg") * weight,
        "lymphocyte_space": value("lymphocyte_space_per_kg") * weight,
        "marrow_normal": capacity - b_precursor,
        "blin_elimination": blin_clearance / blin_volume,
        "blin_volume": blin_volume,
        "ino_clearance_ss": value("ino_clearance_ss") * lbm_ratio ** value("ino_clearance_ss_lbm_exponent"),
        "ino_clearance_time": value("ino_clearance_time") * lbm_ratio ** value("ino_clearance_time_lbm_exponent"),
        "ino_decay": value("ino_decay_rate") * (pb_blasts / 0.352) ** value("ino_decay_blast_exponent")
        * (age / 60.0) ** value("ino_decay_age_exponent"),
        "ino_central_volume": value("ino_central_volume") * lbm_ratio ** value("ino_central_volume_lbm_exponent"),
        "chemosensitivity": covariates.chemosensitivity,
        "t_cell_fitness": covariates.t_cell_fitness,
        "crs_susceptibility": np.exp(value("crs_susceptibility_sd")
                                     * standard_normals(seed, ids, base + _CRS_STREAM)),
        "icans_susceptibility": np.exp(value("icans_susceptibility_sd")
                                       * standard_normals(seed, ids, base + _ICANS_STREAM)),
        "prior_hsct": covariates.prior_hsct.astype(np.float64),
        "wbc_per_uL": covariates.wbc_per_uL,
    }
    for name, column in D.items():
        out[:, column] = derived[name]
    return out

