"""Initial state and context of each patient at enrollment: leukemia burden from marrow blast percent,
antigen subclones (small ones drawn as whole cells), normal pools, and the uniform draws that decide
extinction and competing death hazards."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import poisson

from ..model.layout import (
    C_ALIVE, C_BLIN_INTERRUPTED_UNTIL, C_CAR_INFUSION, C_CAR_TMAX, C_CLONE_SIZE, C_CRS_ONSET,
    C_EXTINCTION_THRESHOLD, C_HSCT_TIME, C_INFECTION_THRESHOLD, C_INO_FIRST, C_SOS_FATAL_U, C_SOS_THRESHOLD,
    C_SOS_TIME, C_STEROID_TIME, C_TOCILIZUMAB_TIME, C_TRM_THRESHOLD, D, N_CLASSES, N_CONTEXT, N_STATES,
    S_B_MATURE, S_B_PRECURSOR, S_CAR_EFFECTOR, S_CAR_EXHAUSTED, S_CAR_MEMORY, S_EXTINCTION, S_LEUKEMIA,
    S_MARROW, S_T_ACTIVE, S_T_RESTING,
)
from ..model.registry import INDEX
from ..population.covariates import Covariates
from ..population.streams import Stream, uniforms
from .extinction import extinction_thresholds
from .integrator import EXTINCTION_STREAM_STRIDE

__all__ = ["initial_state", "DISCRETE_CLONE_LIMIT"]

#: Clones with a mean below this many cells start as a Poisson-distributed whole number of cells.
DISCRETE_CLONE_LIMIT = 1.0e6
#: Activated T cells at baseline, as a fraction of resting T cells (assumption [U]).
_BASELINE_ACTIVE_T = 1.0e-3
#: ln of the placeholder size of absent CAR-T pools (never read while the CAR-T flag is off).
_ABSENT = 0.0

_SWITCHES = ("switch_cd19_loss", "switch_cd22_low", "switch_lineage")


def initial_state(p: NDArray[np.float64], covariates: Covariates,
                  seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """State (patients x N_STATES) and context (patients x N_CONTEXT) at enrollment (time 0)."""
    n = len(covariates)
    ids = covariates.patient_id
    y = np.zeros((n, N_STATES))
    c = np.zeros((n, N_CONTEXT))
    capacity = p[:, D["marrow_capacity"]]
    blast_fraction = covariates.marrow_blasts_percent / 100.0
    total = blast_fraction * capacity
    minor = np.stack([covariates.cd19_negative_fraction, covariates.cd22_low_fraction,
                      covariates.lineage_switch_fraction], axis=1)
    bulk = total * np.clip(1.0 - minor.sum(axis=1), 0.0, 1.0)
    extinction = Stream.block("extinction")
    subclones = Stream.block("subclones")

    means = np.concatenate([bulk[:, None], total[:, None] * minor], axis=1)
    sizes = np.empty((n, N_CLASSES))
    for k in range(N_CLASSES):
        u = uniforms(seed, ids, subclones + k)
        discrete = means[:, k] < DISCRETE_CLONE_LIMIT
        sizes[:, k] = means[:, k]
        sizes[discrete, k] = poisson.ppf(u[discrete], np.maximum(means[discrete, k], 1e-300))
        if k > 0:
            inflow = p[:, INDEX[_SWITCHES[k - 1]]] * bulk
            sizes[:, k] = np.where((sizes[:, k] < 1.0) & (inflow >= 1.0), 1.0, sizes[:, k])
    alive = sizes >= 1.0
    safe = np.where(alive, sizes, 1.0)
    y[:, S_LEUKEMIA:S_LEUKEMIA + N_CLASSES] = np.log(safe)
    y[:, S_EXTINCTION:S_EXTINCTION + N_CLASSES] = -np.log(safe)
    c[:, C_ALIVE:C_ALIVE + N_CLASSES] = alive
    c[:, C_CLONE_SIZE:C_CLONE_SIZE + N_CLASSES] = safe
    for k in range(N_CLASSES):
        u = uniforms(seed, ids, extinction + k * EXTINCTION_STREAM_STRIDE)
        c[:, C_EXTINCTION_THRESHOLD + k] = extinction_thresholds(safe[:, k], u)

    normal = 1.0 - blast_fraction
    y[:, S_B_PRECURSOR] = np.log(np.maximum(normal, 1e-3) * p[:, D["b_precursor_normal"]])
    y[:, S_B_MATURE] = np.log(np.maximum(normal, 1e-3) * p[:, D["b_mature_normal"]])
    y[:, S_MARROW] = np.log(np.maximum(normal, 1e-3) * p[:, D["marrow_normal"]])
    y[:, S_T_RESTING] = np.log(p[:, D["t_normal"]])
    y[:, S_T_ACTIVE] = np.log(_BASELINE_ACTIVE_T * p[:, D["t_normal"]])
    y[:, [S_CAR_EFFECTOR, S_CAR_MEMORY, S_CAR_EXHAUSTED]] = _ABSENT

    hazards = Stream.block("hazards")
    c[:, C_INFECTION_THRESHOLD] = -np.log(uniforms(seed, ids, hazards))
    c[:, C_TRM_THRESHOLD] = -np.log(uniforms(seed, ids, hazards + 1))
    c[:, C_SOS_THRESHOLD] = -np.log(uniforms(seed, ids, hazards + 2))
    c[:, C_SOS_FATAL_U] = uniforms(seed, ids, hazards + 3)
    for column in (C_INO_FIRST, C_HSCT_TIME, C_TOCILIZUMAB_TIME, C_STEROID_TIME, C_BLIN_INTERRUPTED_UNTIL,
                   C_CRS_ONSET, C_CAR_INFUSION, C_CAR_TMAX, C_SOS_TIME):
        c[:, column] = -1.0
    return y, c
