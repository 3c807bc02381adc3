"""Baseline covariates of virtual patients drawn from a protocol's population.

Every draw is the inverse CDF of one counter-based uniform (:mod:`leukosim.population.streams`) on a stream
fixed per covariate, so patient k's covariates depend only on the seed, k and the population.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logit, ndtr, ndtri

from ..model.latent import CD22_PARTIAL_LOW_SHARE
from ..model.registry import ParameterSet
from ..protocol.schema import RELAPSED_DISEASE, Distribution, Population
from .body_size import SDS_LIMIT, bsa_m2, height_weight_from_sds
from .streams import Stream, uniforms

__all__ = ["BOOLEAN_COVARIATES", "COVARIATE_STREAMS", "Covariates", "cd22_low_shares", "draw_covariates", "latent_law",
           "sample_distribution"]

#: Stream offsets within the "covariates" block, by position: append new draws, never reorder or remove.
COVARIATE_STREAMS: tuple[str, ...] = (
    "age_years",
    "male",
    "height_sds",
    "bmi_sds",
    "marrow_blasts_percent",
    "wbc_per_uL",
    "prior_hsct",
    "prior_blinatumomab",
    "cd19_negative_fraction",
    "cd22_low_fraction",
    "lineage_switch_fraction",
    "t_cell_fitness",
    "chemosensitivity",
    "hsct_access_quantile",
    "cd22_partial",
    "cd22_partial_low_share",
    "late_relapse",
)


def _identity(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return x


#: (to the normal scale, back) for the laws that are normal after a transform.
_TRANSFORMS = {"normal": (_identity, _identity), "lognormal": (np.log, np.exp), "logitnormal": (logit, expit)}


def sample_distribution(dist: Distribution, u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Draws from ``dist`` truncated to its ``range``, one per uniform in ``u`` in (0, 1), by the inverse CDF.

    lognormal: log(x) ~ N(log(median), log(1 + cv^2)); logitnormal: logit(x) ~ N(logit(median), sd^2).
    Truncation maps u to F(lo) + u (F(hi) - F(lo)) before inverting, so each draw is increasing in its u.
    """
    u = np.asarray(u, dtype=np.float64)
    if dist.distribution == "fixed":
        return np.full(u.shape, float(dist.value))  # type: ignore[arg-type]
    if dist.distribution == "uniform":
        low, high = dist.range  # type: ignore[misc]
        return low + u * (high - low)
    if dist.distribution == "loguniform":
        low, high = np.log(dist.range)  # type: ignore[arg-type]
        return np.exp(low + u * (high - low))
    low, high = dist.bounds()
    if dist.distribution == "logitnormal" and not 0.0 <= low < high <= 1.0:
        raise ValueError(f"a logitnormal range must lie within [0, 1], got [{low}, {high}]")
    forward, inverse = _TRANSFORMS[dist.distribution]
    centre = forward(dist.mean if dist.distribution == "normal" else dist.median)
    scale = np.sqrt(np.log1p(dist.cv**2)) if dist.distribution == "lognormal" else dist.sd
    with np.errstate(divide="ignore"):
        z_low, z_high = (forward(low) - centre) / scale, (forward(high) - centre) / scale
    # the schema keeps the centre inside the range, so F(lo) <= 1/2: no law is confined to a far upper tail
    z = ndtri(ndtr(z_low) + u * (ndtr(z_high) - ndtr(z_low)))
    return np.clip(inverse(centre + scale * z), low, high)


@dataclass(frozen=True)
class Covariates:
    """Baseline covariates, one array element per patient (units in the field names; fractions in [0, 1]).
    ``relapsed``: relapsed or refractory disease stage; ``late_relapse``: a late first relapse (population's
    ``late_relapse_fraction``); ``hsct_access_quantile``: the patient's uniform draw
    for access to a scheduled transplant (donor found, fit in time), compared with ``hsct_access_probability``."""

    patient_id: NDArray[np.int64]
    age_years: NDArray[np.float64]
    male: NDArray[np.bool_]
    height_cm: NDArray[np.float64]
    weight_kg: NDArray[np.float64]
    bsa_m2: NDArray[np.float64]
    marrow_blasts_percent: NDArray[np.float64]
    wbc_per_uL: NDArray[np.float64]
    prior_hsct: NDArray[np.bool_]
    prior_blinatumomab: NDArray[np.bool_]
    cd19_negative_fraction: NDArray[np.float64]
    cd22_low_fraction: NDArray[np.float64]
    lineage_switch_fraction: NDArray[np.float64]
    t_cell_fitness: NDArray[np.float64]
    chemosensitivity: NDArray[np.float64]
    relapsed: NDArray[np.bool_]
    late_relapse: NDArray[np.bool_]
    hsct_access_quantile: NDArray[np.float64]

    def __post_init__(self) -> None:
        lengths = {name: len(column) for name, column in self.to_dict().items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"covariate columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.patient_id)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Column name -> array."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def take(self, index: NDArray[np.int64] | NDArray[np.bool_] | slice) -> Covariates:
        """The patients selected by ``index`` (positions, boolean mask or slice)."""
        return Covariates(**{name: column[index] for name, column in self.to_dict().items()})

    @classmethod
    def concat(cls, parts: Sequence[Covariates]) -> Covariates:
        """The patients of ``parts`` in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(**{field.name: np.concatenate([getattr(part, field.name) for part in parts])
                      for field in fields(cls)})


#: The yes/no covariates (boolean arrays; 0/1 in data files).
BOOLEAN_COVARIATES = tuple(f.name for f in fields(Covariates) if f.type == "NDArray[np.bool_]")

#: Truncation of the log-normal laws of T-cell fitness and chemosensitivity (relative units).
_RELATIVE_RANGE = (0.1, 10.0)


def latent_law(population: Population, name: str, parameters: ParameterSet) -> Distribution:
    """The law of latent feature ``name`` (a key of ``schema.LATENT_LIMITS``) in ``population``: the protocol's
    own when it states one, else the parameter set's law for the population's disease stage (``model/latent.py``):
    logit-normal pre-existing shares, log-normal T-cell fitness (median 1 at diagnosis) and chemosensitivity
    (median 1, relative to the stage's typical patient)."""
    stated = getattr(population, name)
    if stated is not None:
        return stated
    relapsed = population.disease in RELAPSED_DISEASE
    if name in ("cd19_negative_fraction", "cd22_low_fraction", "lineage_switch_fraction"):
        stem = "preexisting_" + name.removesuffix("_fraction")
        return Distribution(distribution="logitnormal", median=parameters[f"{stem}_median"],
                            sd=parameters[f"{stem}_logit_sd"])
    if name == "t_cell_fitness":
        median = parameters["t_cell_fitness_relapsed_median"] if relapsed else 1.0
        return Distribution(distribution="lognormal", median=median, cv=parameters["t_cell_fitness_cv"],
                            range=_RELATIVE_RANGE)
    if name == "chemosensitivity":
        cv = parameters["chemosensitivity_cv_relapsed" if relapsed else "chemosensitivity_cv_newly_diagnosed"]
        return Distribution(distribution="lognormal", median=1.0, cv=cv, range=_RELATIVE_RANGE)
    raise KeyError(f"{name!r} is not a latent population feature")


def cd22_low_shares(population: Population, parameters: ParameterSet, u_law: NDArray[np.float64],
                    u_partial: NDArray[np.float64], u_share: NDArray[np.float64]) -> NDArray[np.float64]:
    """CD22-low shares of blasts for uniforms ``u_*``: the latent law; unless the protocol states one, a share
    ``cd22_partial_fraction`` of leukemias express CD22 on only part of their blasts, their CD22-low share uniform
    on :data:`~leukosim.model.latent.CD22_PARTIAL_LOW_SHARE`."""
    shares = sample_distribution(latent_law(population, "cd22_low_fraction", parameters), u_law)
    if population.cd22_low_fraction is not None:
        return shares
    low, high = CD22_PARTIAL_LOW_SHARE
    return np.where(u_partial < parameters["cd22_partial_fraction"], low + (high - low) * u_share, shares)


def draw_covariates(population: Population, seed: int, patient_ids: NDArray[np.int64],
                    parameters: ParameterSet) -> Covariates:
    """Baseline covariates of the patients ``patient_ids`` of run ``seed``; latent features follow
    :func:`latent_law` under ``parameters``.

    Height and weight come from the population's growth reference with independent height and BMI SDS,
    each standard normal truncated to [-3, 3]; BSA by Mosteller.
    """
    ids = np.asarray(patient_ids, dtype=np.int64)
    first = Stream.block("covariates")

    def u(name: str) -> NDArray[np.float64]:
        return uniforms(seed, ids, first + COVARIATE_STREAMS.index(name))

    def draw(name: str) -> NDArray[np.float64]:
        return sample_distribution(getattr(population, name), u(name))

    def draw_latent(name: str) -> NDArray[np.float64]:
        return sample_distribution(latent_law(population, name, parameters), u(name))

    sds = Distribution(distribution="normal", mean=0.0, sd=1.0, range=(-SDS_LIMIT, SDS_LIMIT))
    age = draw("age_years")
    male = u("male") < population.male_fraction
    height_sds = sample_distribution(sds, u("height_sds"))
    bmi_sds = sample_distribution(sds, u("bmi_sds"))
    height, weight = height_weight_from_sds(age, male, height_sds, bmi_sds, population.growth_reference)
    return Covariates(
        patient_id=ids,
        age_years=age,
        male=male,
        height_cm=height,
        weight_kg=weight,
        bsa_m2=bsa_m2(height, weight, "mosteller"),
        marrow_blasts_percent=draw("marrow_blasts_percent"),
        wbc_per_uL=draw("wbc_per_uL"),
        prior_hsct=u("prior_hsct") < population.prior_hsct_fraction,
        prior_blinatumomab=u("prior_blinatumomab") < population.prior_blinatumomab_fraction,
        cd19_negative_fraction=draw_latent("cd19_negative_fraction"),
        cd22_low_fraction=cd22_low_shares(population, parameters, u("cd22_low_fraction"), u("cd22_partial"),
                                          u("cd22_partial_low_share")),
        lineage_switch_fraction=draw_latent("lineage_switch_fraction"),
        t_cell_fitness=draw_latent("t_cell_fitness"),
        chemosensitivity=draw_latent("chemosensitivity"),
        relapsed=np.full(ids.size, population.disease in RELAPSED_DISEASE),
        late_relapse=u("late_relapse") < population.late_relapse_fraction,
        hsct_access_quantile=u("hsct_access_quantile"),
    )
