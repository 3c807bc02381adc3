"""What can be measured, as functions of the state: marrow blast fraction, peripheral B cells, CAR
transgene copies, count recovery. The assay layer (``observe/assays.py``) adds sampling noise."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..kernel import kernel
from .layout import (
    C_ALIVE, C_CAR_PRESENT, D, N_CLASSES, S_B_MATURE, S_B_PRECURSOR, S_CAR_EFFECTOR, S_CAR_EXHAUSTED,
    S_CAR_MEMORY, S_LEUKEMIA, S_MARROW, S_T_ACTIVE, S_T_RESTING,
)
from ..observe.assays import DNA_UG_PER_DIPLOID_CELL
from .registry import INDEX
from .rhs import inotuzumab_concentration

_B_BLOOD = INDEX["b_blood_fraction"]
_BLOOD_VOLUME = INDEX["blood_volume_ml_per_kg"]
_CAR_BLOOD = INDEX["car_blood_fraction"]
_VCN = INDEX["car_vector_copies"]
_WEIGHT = D["weight_kg"]
_T_NORMAL = D["t_normal"]
_MARROW_NORMAL = D["marrow_normal"]
_ASSESSABLE = INDEX["assessable_marrow_cellularity"]
_MARROW_PER_KG = INDEX["marrow_cells_per_kg"]

#: Leukocytes per uL of a child with normal counts (assumption [U]).
NORMAL_LEUKOCYTES_PER_UL = 6000.0

R_MARROW_FRACTION = 0  # leukemic cells / nucleated marrow cells
R_CLASS_FRACTION = 1  # 4 values: share of each class in the leukemia
R_B_CELLS_PER_UL = 5
R_CAR_COPIES_PER_UG = 6
R_COUNT_RECOVERY = 7  # normal haematopoiesis / its capacity
R_LEUKEMIA_CELLS = 8
R_T_CELLS = 9
R_CAR_CELLS = 10
R_INO_NG_PER_ML = 11
N_READOUTS = 12
READOUT_NAMES = ("marrow_leukemic_fraction", "fraction_cd19pos_cd22pos", "fraction_cd19neg", "fraction_cd22low",
                 "fraction_lineage_switch", "b_cells_per_uL", "car_copies_per_ug", "count_recovery",
                 "leukemia_cells", "t_cells", "car_t_cells", "inotuzumab_ng_per_mL")


@kernel
def leukemia_cells(y: np.ndarray, c: np.ndarray) -> float:
    total = 0.0
    for k in range(N_CLASSES):
        if c[C_ALIVE + k] > 0.5:
            total += math.exp(y[S_LEUKEMIA + k])
    return total


@kernel
def marrow_leukemic_fraction(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> float:
    """Leukemic cells among nucleated marrow cells (MRD fraction; x100 = blast percent), the cells of an
    aplastic marrow counted as those of the least cellular marrow a response assessment evaluates."""
    leukemia = leukemia_cells(y, c)
    nucleated = leukemia + math.exp(y[S_MARROW]) + math.exp(y[S_B_PRECURSOR])
    return leukemia / max(nucleated, p[_ASSESSABLE] * p[_MARROW_PER_KG] * p[_WEIGHT])


@kernel
def blood_volume_ul(p: np.ndarray) -> float:
    return p[_BLOOD_VOLUME] * p[_WEIGHT] * 1000.0


@kernel
def b_cells_per_ul(y: np.ndarray, p: np.ndarray) -> float:
    """Peripheral CD19+ B cells per uL."""
    return math.exp(y[S_B_MATURE]) * p[_B_BLOOD] / blood_volume_ul(p)


@kernel
def car_copies_per_ug(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> float:
    """CAR transgene copies per ug genomic DNA of peripheral blood (qPCR read-out; copies/ug rises when
    lymphodepletion lowers the leukocyte count, Sci Rep 2020 s41598-020-74927-8)."""
    if c[C_CAR_PRESENT] < 0.5:
        return 0.0
    car = math.exp(y[S_CAR_EFFECTOR]) + math.exp(y[S_CAR_MEMORY]) + math.exp(y[S_CAR_EXHAUSTED])
    volume = blood_volume_ul(p)
    car_per_ul = car * p[_CAR_BLOOD] / volume
    t_ratio = (math.exp(y[S_T_RESTING]) + math.exp(y[S_T_ACTIVE])) / p[_T_NORMAL]
    marrow_ratio = min(1.0, math.exp(y[S_MARROW]) / p[_MARROW_NORMAL])
    leukocytes = NORMAL_LEUKOCYTES_PER_UL * (0.6 * marrow_ratio + 0.4 * t_ratio) + car_per_ul
    return car_per_ul * p[_VCN] / (leukocytes * DNA_UG_PER_DIPLOID_CELL)


@kernel
def count_recovery(y: np.ndarray, p: np.ndarray) -> float:
    """Normal haematopoiesis relative to its capacity (1 = normal counts)."""
    return math.exp(y[S_MARROW]) / p[_MARROW_NORMAL]


@kernel
def readouts(y: np.ndarray, p: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
    total = leukemia_cells(y, c)
    out[R_MARROW_FRACTION] = marrow_leukemic_fraction(y, p, c)
    for k in range(N_CLASSES):
        out[R_CLASS_FRACTION + k] = math.exp(y[S_LEUKEMIA + k]) / total if total > 0 and c[C_ALIVE + k] > 0.5 else 0.0
    out[R_B_CELLS_PER_UL] = b_cells_per_ul(y, p)
    out[R_CAR_COPIES_PER_UG] = car_copies_per_ug(y, p, c)
    out[R_COUNT_RECOVERY] = count_recovery(y, p)
    out[R_LEUKEMIA_CELLS] = total
    out[R_T_CELLS] = math.exp(y[S_T_RESTING]) + math.exp(y[S_T_ACTIVE])
    car_present = c[C_CAR_PRESENT] > 0.5
    out[R_CAR_CELLS] = (math.exp(y[S_CAR_EFFECTOR]) + math.exp(y[S_CAR_MEMORY])
                        + math.exp(y[S_CAR_EXHAUSTED])) if car_present else 0.0
    out[R_INO_NG_PER_ML] = inotuzumab_concentration(y, p)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def readouts_batch(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Readouts of every patient (rows of ``y``, ``p``, ``c``)."""
    out = np.empty((y.shape[0], N_READOUTS))
    for i in numba.prange(y.shape[0]):
        readouts(y[i], p[i], c[i], out[i])
    return out
