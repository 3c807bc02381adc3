"""Individual parameters: registry values with between-patient variability, and the per-patient
quantities derived from covariates (marrow size, body-size-scaled PK, normal cell pools)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..model.disease import marrow_cellularity
from ..model.layout import D, N_PATIENT, N_REGISTRY
from ..model.registry import INDEX, PARAMETERS, ParameterSet
from .covariates import Covariates
from .streams import Stream, standard_normals, uniforms

__all__ = ["IIV_OMEGA", "individual_parameters", "lean_body_mass_kg", "latent_effects_at_median",
           "parameters_from_etas", "random_effects"]

#: PB blasts relative to marrow blast fraction x WBC (assumption [U]) for the inotuzumab kdes covariate.
_PB_BLAST_SHARE = 0.5
#: Age (y) above which the adult covariate effects apply: TRM hazard x (age / 18)^``trm_adult_age_exponent``,
#: post-progression cure fractions / (age / 18)^``post_progression_cure_adult_age_exponent``.
ADULT_AGE_YEARS = 18.0
#: SD of each registry parameter's log-normal random effect eta (omega = sqrt(ln(1 + cv^2)); 0: no variability).
IIV_OMEGA: NDArray[np.float64] = np.array([np.sqrt(np.log1p(p.iiv_cv**2)) for p in PARAMETERS])


def lean_body_mass_kg(weight_kg: NDArray[np.float64], height_cm: NDArray[np.float64],
                      male: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Lean body mass (kg), Janmahasatian et al. Clin Pharmacokinet 2005;44:1051."""
    bmi = weight_kg / (height_cm / 100.0) ** 2
    return np.where(male, 9270.0 * weight_kg / (6680.0 + 216.0 * bmi), 9270.0 * weight_kg / (8780.0 + 244.0 * bmi))


def random_effects(covariates: Covariates, seed: int) -> NDArray[np.float64]:
    """The random effects of run ``seed`` (patients x registry parameters, log scale): eta ~ N(0, omega^2) for
    each parameter with ``iiv_cv`` > 0 (:data:`IIV_OMEGA`), drawn on its own stream; 0 elsewhere."""
    ids = covariates.patient_id
    etas = np.zeros((ids.size, N_REGISTRY))
    for index in np.flatnonzero(IIV_OMEGA > 0.0):
        etas[:, index] = IIV_OMEGA[index] * _normals(seed, ids, PARAMETERS[index].name)
    return etas


def _stream(name: str) -> int:
    """The stream of the patient-level random effect ``name``, keyed by its name."""
    return Stream.named(f"parameters/{name}")


def _normals(seed: int, patient_ids: NDArray[np.int64], name: str) -> NDArray[np.float64]:
    """Standard normal draws of the patient-level random effect ``name``."""
    return standard_normals(seed, patient_ids, _stream(name))


def _stage_factor(relapsed: NDArray[np.bool_], relapsed_value: float) -> NDArray[np.float64]:
    """A disease-stage factor per patient: ``relapsed_value`` in relapsed disease, 1 in newly diagnosed."""
    return np.where(relapsed, relapsed_value, 1.0)


def _stage_chemosensitivity(covariates: Covariates, parameters: ParameterSet) -> NDArray[np.float64]:
    """The disease-stage factor on chemosensitivity: ``chemosensitivity_relapsed`` in relapsed or refractory
    disease, ``chemosensitivity_late_relapse`` in a late first relapse, 1 in newly diagnosed disease."""
    relapsed = _stage_factor(covariates.relapsed, parameters["chemosensitivity_relapsed"])
    return np.where(covariates.late_relapse, parameters["chemosensitivity_late_relapse"], relapsed)


def _chemosensitivity_other(chemosensitivity: NDArray[np.float64], stage_factor: NDArray[np.float64],
                            parameters: ParameterSet, own_factor: NDArray[np.float64] | float
                            ) -> NDArray[np.float64]:
    """Chemosensitivity to the regimens outside the induction class: the patient's (stage-free) chemosensitivity
    raised to ``chemosensitivity_shared_exponent``, times the disease-stage factor and a factor of its own."""
    return chemosensitivity ** parameters["chemosensitivity_shared_exponent"] * stage_factor * own_factor


def latent_effects_at_median(p: NDArray[np.float64], parameters: ParameterSet, covariates: Covariates) -> None:
    """Set, in place, the per-patient effects no observation informs (the leukemia's sensitivity to T-cell
    killing and whether it resists it, the marrow reserve, the own factor of the chemosensitivity outside the
    induction class) to the medians of their laws, as a digital twin assumes them (a resistant leukemia is the
    minority: ``t_cell_resistant_fraction`` is at most 0.5)."""
    relapsed = covariates.relapsed
    p[:, D["t_cell_kill_sensitivity"]] = 1.0
    p[:, D["car_exhaustion_factor"]] = 1.0
    p[:, D["chemosensitivity_other"]] = _chemosensitivity_other(
        covariates.chemosensitivity, _stage_chemosensitivity(covariates, parameters), parameters, 1.0)
    p[:, D["marrow_reserve"]] = _stage_factor(relapsed, parameters["marrow_reserve_relapsed_median"])


def individual_parameters(parameters: ParameterSet, covariates: Covariates, seed: int) -> NDArray[np.float64]:
    """Per-patient parameter matrix (patients x ``layout.N_PATIENT``) of run ``seed``: random effects from
    :func:`random_effects`, applied by :func:`parameters_from_etas`."""
    return parameters_from_etas(parameters, covariates, random_effects(covariates, seed), seed)


def parameters_from_etas(parameters: ParameterSet, covariates: Covariates, etas: NDArray[np.float64],
                         seed: int) -> NDArray[np.float64]:
    """Per-patient parameter matrix (patients x ``layout.N_PATIENT``) for given random effects ``etas``
    (patients x registry parameters, log scale): value = typical x exp(eta) for each registry parameter with
    ``iiv_cv`` > 0 (other columns of ``etas`` are ignored; relapsed disease grows
    ``leukemia_growth_relapsed_factor`` times faster; above ``ADULT_AGE_YEARS`` the TRM hazard and the
    post-progression cure fractions carry their age powers), then the derived quantities named in
    ``layout.DERIVED_NAMES``. CRS/ICANS susceptibilities, the leukemia's sensitivity to T-cell killing, whether
    it resists that killing (``t_cell_resistant_fraction``: its sensitivity is multiplied by
    ``t_cell_resistant_kill_factor`` and the CAR-T exhaustion rate by ``t_cell_resistant_car_exhaustion_factor``),
    the marrow reserve and the own factor of the chemosensitivity outside the induction class are drawn for
    (``seed``, patient id)."""
    ids = covariates.patient_id
    n = ids.size
    etas = np.asarray(etas, dtype=np.float64)
    if etas.shape != (n, N_REGISTRY):
        raise ValueError(f"etas must be patients x registry parameters ({n} x {N_REGISTRY}), got {etas.shape}")
    out = np.empty((n, N_PATIENT))
    typical = parameters.array()
    for index in range(N_REGISTRY):
        out[:, index] = typical[index] * np.exp(etas[:, index]) if IIV_OMEGA[index] > 0.0 else typical[index]
    relapsed = covariates.relapsed
    out[:, INDEX["leukemia_net_growth"]] *= _stage_factor(relapsed, parameters["leukemia_growth_relapsed_factor"])
    adult_age = np.maximum(covariates.age_years / ADULT_AGE_YEARS, 1.0)  # 1 for children
    out[:, INDEX["trm_hazard"]] *= adult_age ** parameters["trm_adult_age_exponent"]
    for cure in ("post_progression_cure_newly_diagnosed", "post_progression_cure_relapsed"):
        out[:, INDEX[cure]] /= adult_age ** parameters["post_progression_cure_adult_age_exponent"]

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
    stage_sensitivity = _stage_chemosensitivity(covariates, parameters)
    resistant = uniforms(seed, ids, _stream("t_cell_resistant")) < value("t_cell_resistant_fraction")
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
        "chemosensitivity": covariates.chemosensitivity * stage_sensitivity,
        "chemosensitivity_other": _chemosensitivity_other(
            covariates.chemosensitivity, stage_sensitivity, parameters,
            np.exp(value("chemosensitivity_other_sd") * _normals(seed, ids, "chemosensitivity_other"))),
        "t_cell_fitness": covariates.t_cell_fitness,
        "crs_susceptibility": np.exp(value("crs_susceptibility_sd")
                                     * _normals(seed, ids, "crs_susceptibility")),
        "icans_susceptibility": np.exp(value("icans_susceptibility_sd")
                                       * _normals(seed, ids, "icans_susceptibility")),
        "prior_hsct": covariates.prior_hsct.astype(np.float64),
        "wbc_per_uL": covariates.wbc_per_uL,
        "t_cell_kill_sensitivity": np.exp(value("t_cell_kill_sensitivity_sd")
                                          * _normals(seed, ids, "t_cell_kill_sensitivity"))
        * np.where(resistant, value("t_cell_resistant_kill_factor"), 1.0),
        "marrow_reserve": _stage_factor(relapsed, parameters["marrow_reserve_relapsed_median"])
        * np.exp(value("marrow_reserve_sd") * _normals(seed, ids, "marrow_reserve")),
        "car_exhaustion_factor": np.where(resistant, value("t_cell_resistant_car_exhaustion_factor"), 1.0),
    }
    for name, column in D.items():
        out[:, column] = derived[name]
    return out

