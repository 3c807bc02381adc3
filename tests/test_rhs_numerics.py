"""Numerics of the right-hand side: the SIMD-lane exponential against NumPy, and pool ratios that depend only
on differences of ln counts, also where the counts themselves have underflowed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leukosim.engine.initial import initial_state
from leukosim.model.lanes import LANE_SCRATCH, exp_lanes
from leukosim.model.layout import (
    C_ALIVE, C_CAR_PRESENT, D, N_DRIVE, N_STATES, S_B_MATURE, S_B_PRECURSOR, S_CAR_EFFECTOR, S_CAR_EXHAUSTED,
    S_CAR_MEMORY, S_LEUKEMIA, S_MARROW,
)
from leukosim.model.readouts import R_MARROW_FRACTION, readouts_batch
from leukosim.model.registry import INDEX, default_parameters
from leukosim.model.rhs import RHS_WORK, derivatives
from leukosim.population.covariates import draw_covariates
from leukosim.population.individual import individual_parameters
from leukosim.protocol.load import load_protocol


def _exp_lanes(x: np.ndarray) -> np.ndarray:
    out = np.empty(LANE_SCRATCH * x.size)
    exp_lanes(x, out, x.size)
    return out[:x.size]


@pytest.mark.parametrize("low, high", [(-708.0, 709.78), (-2.0, 2.0), (-40.0, 40.0)])
def test_lane_exponential_is_within_two_ulp_of_numpy(low: float, high: float) -> None:
    x = np.random.default_rng(7).uniform(low, high, 200_001)
    reference = np.exp(x)
    ulps = np.abs(_exp_lanes(x) - reference) / np.spacing(reference)
    assert ulps.max() <= 2.0
    assert np.median(ulps) == 0.0  # most results are the correctly rounded ones


def test_lane_exponential_special_values() -> None:
    x = np.array([0.0, np.inf, -np.inf, np.nan, 709.9, 1e300, -708.1, -1e300, 709.7, -707.9])
    result = _exp_lanes(x)
    assert result[0] == 1.0
    assert result[1] == np.inf and result[4] == np.inf and result[5] == np.inf
    assert result[2] == 0.0 and result[6] == 0.0 and result[7] == 0.0  # no subnormal results
    assert np.isnan(result[3])
    assert result[8] == pytest.approx(math.exp(709.7), rel=1e-15)
    assert result[9] == pytest.approx(math.exp(-707.9), rel=1e-15)


def _car_patient() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parameters = default_parameters()
    covariates = draw_covariates(load_protocol("eliana").population, 3, np.arange(1), parameters)
    p = individual_parameters(parameters, covariates, 3)[0]
    y, c = (a[0] for a in initial_state(p[None, :], covariates, 3))
    c[C_CAR_PRESENT] = 1.0
    return y, p, c


def _rates(y: np.ndarray, p: np.ndarray, c: np.ndarray) -> np.ndarray:
    dy, work = np.empty(N_STATES), np.empty(RHS_WORK)
    derivatives(5.0, y, p, np.zeros(N_DRIVE), c, dy, work)
    return dy


@pytest.mark.parametrize("shift", [-700.0, -740.0, -800.0])
def test_car_t_pool_exchange_depends_on_ln_differences_where_counts_underflow(shift: float) -> None:
    """Memory formation, reactivation and exhaustion fluxes per cell are ratios of pool sizes: moving all three
    CAR-T pools by the same ln shift (to counts below the smallest normal double, or to 0) leaves the per-capita
    rates unchanged (the pools are negligible against the T cells they share space with in both cases)."""
    y, p, c = _car_patient()
    y[S_CAR_EFFECTOR], y[S_CAR_MEMORY], y[S_CAR_EXHAUSTED] = -20.0, -25.0, -18.0
    moderate = _rates(y, p, c)
    y[S_CAR_EFFECTOR:S_CAR_EXHAUSTED + 1] += shift
    tiny = _rates(y, p, c)
    for state in (S_CAR_EFFECTOR, S_CAR_MEMORY, S_CAR_EXHAUSTED):
        assert math.isfinite(tiny[state])
        assert tiny[state] == pytest.approx(moderate[state], rel=1e-12)


def test_b_cell_maturation_flux_depends_on_the_ln_difference_where_counts_underflow() -> None:
    y, p, c = _car_patient()
    y[S_B_PRECURSOR], y[S_B_MATURE] = 5.0, 3.0
    moderate = _rates(y, p, c)[S_B_MATURE]
    y[S_B_PRECURSOR], y[S_B_MATURE] = -735.0, -737.0
    assert _rates(y, p, c)[S_B_MATURE] == pytest.approx(moderate, rel=1e-12)


def test_blasts_of_an_aplastic_marrow_are_counted_against_an_assessable_marrow() -> None:
    """With normal haematopoiesis the blast fraction is leukemic over nucleated marrow cells; in an aplastic
    marrow (after a block) it is leukemic cells over the cells of a marrow at the assessable cellularity, so
    aplasia alone does not raise it."""
    y, p, c = _car_patient()
    c[C_ALIVE + 1:C_ALIVE + 4] = 0.0
    leukemia = 1.0e8
    y[S_LEUKEMIA] = math.log(leukemia)

    def fraction() -> float:
        return float(readouts_batch(y[None, :], p[None, :], c[None, :])[0, R_MARROW_FRACTION])

    normal = math.exp(y[S_MARROW]) + math.exp(y[S_B_PRECURSOR])
    assert fraction() == pytest.approx(leukemia / (leukemia + normal), rel=1e-12)
    y[S_MARROW], y[S_B_PRECURSOR] = math.log(1e6), math.log(1e5)
    assessable = p[INDEX["assessable_marrow_cellularity"]] * p[INDEX["marrow_cells_per_kg"]] * p[D["weight_kg"]]
    assert fraction() == pytest.approx(leukemia / assessable, rel=1e-12)
    assert fraction() < 2.0 * leukemia / (leukemia + normal)
