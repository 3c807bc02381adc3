"""Stochastic extinction layer: Kendall's birth-death extinction probability along the deterministic
trajectory, and resampling of a surviving clone at its bottleneck.

For a linear birth-death process with per-capita birth lambda(t) and death mu(t) started from n0 cells,
Kendall (1948) gives P(extinct by t) = (1 - 1/(n0 K(t)))^n0 with K(t) = 1/m(t) + int_0^t lambda/m ds,
where m(t) is the mean trajectory. Differentiating, dK/dt = mu(t)/m(t) with K(0) = 1/n0, so the layer
needs one extra state per clone, integrated as ln K next to ln m (model_literature.md §6).

Extinction is sampled exactly in law: with U ~ U(0, 1) drawn once per clone, the clone is extinct at
the first time P(extinct by t) >= U, i.e. when ln K reaches ln K* = -ln(n0 (1 - U^(1/n0))).

A clone that survives its bottleneck is larger than the unconditional mean: when the mean is growing
again and P(extinct by t) > 1/2, the clone's size is resampled from its law given survival (geometric
with mean m / (1 - P), exact for a clone descending from one cell) and the layer restarts from that size.
"""

from __future__ import annotations

import math

import numba

from ..kernel import kernel

__all__ = ["extinction_threshold", "extinction_thresholds", "extinction_probability", "surviving_clone_size",
           "RESAMPLE_PROBABILITY"]

#: A growing clone is resampled once its extinction probability so far exceeds this value.
RESAMPLE_PROBABILITY = 0.5


@kernel
def extinction_threshold(clone_size: float, u: float) -> float:
    """ln K* at which a clone of ``clone_size`` cells is extinct, for the clone's uniform draw ``u``."""
    return -math.log(clone_size * -math.expm1(math.log(u) / clone_size))


@numba.vectorize(cache=True)
def extinction_thresholds(clone_size: float, u: float) -> float:
    """Element-wise :func:`extinction_threshold` for arrays."""
    return extinction_threshold(clone_size, u)


@kernel
def extinction_probability(clone_size: float, ln_k: float) -> float:
    """P(extinct by t) = (1 - 1/(n0 K))^n0 for a clone of ``clone_size`` initial cells."""
    x = 1.0 / (clone_size * math.exp(ln_k))
    if x >= 1.0:
        return 0.0
    return math.exp(clone_size * math.log1p(-x))


@kernel
def surviving_clone_size(mean: float, p_extinct: float, u: float) -> float:
    """Size of a clone given survival: geometric on {1, 2, ...} with mean ``mean / (1 - p_extinct)``."""
    conditional_mean = mean / (1.0 - p_extinct)
    if conditional_mean <= 1.0:
        return 1.0
    q = 1.0 - 1.0 / conditional_mean
    return 1.0 + math.floor(math.log(u) / math.log(q))
