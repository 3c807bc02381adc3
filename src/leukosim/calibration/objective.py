"""The calibration objective: how far one parameter set's simulated targets are from the published ones, across
every calibration protocol at once.

Each target contributes the Huber loss of its standardised residual
z = (simulated - published) / sqrt(s_published² + s_simulated²), where s is the half-width of the 95% interval
over 1.96 (published: the reference interval of :mod:`leukosim.endpoints.targets`; simulated: the Monte Carlo
CI): z²/2 up to ``huber_z`` residual SDs, linear beyond (default ``HUBER_Z``). A Gaussian prior on each fitted
(or held) parameter's log10 deviation from its literature value (SD ``PRIOR_SD_DECADES``, or one given per
fitted parameter) makes the fit a maximum a posteriori estimate, so parameters the targets cannot identify
stay at their literature values. Common random numbers: every evaluation simulates the same virtual patients
(same seed), so the objective changes only through the parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..model.registry import CALIBRATABLE, ParameterSet, literature_parameters
from ..protocol.schema import Protocol
from .validate import failed_patients, validation_table

__all__ = ["CalibrationObjective", "FAILED_PATIENT_LOSS", "HUBER_Z", "PRIOR_SD_DECADES", "check_prior_sds",
           "huber_weights", "standardised_residuals", "target_loss", "target_losses"]

PRIOR_SD_DECADES = 0.5  # a factor of 10 away from the literature value is 2 prior SDs
#: residual (in SDs) beyond which a target's loss grows linearly: a target the model's structure cannot reach
#: (AIEOP-BFM 2000's MRD-HR EFS at z = -12 with calibrated-0.13) then pulls on the fit like one missed by
#: HUBER_Z SDs, not four times harder, and no longer buys tiny moves of itself with real misfits elsewhere;
#: every target within 3 SDs keeps its Gaussian loss
HUBER_Z = 3.0
_Z95 = 1.959963984540054
#: loss of one patient whose simulation failed: targets are computed without failed patients, so without it a
#: fit could gain by making the patients who miss a target fail (one failure costs as much as a residual of
#: 1.4 SD)
FAILED_PATIENT_LOSS = 1.0
#: standardised residual given to a target the simulation could not evaluate (e.g. an empty subgroup)
_UNEVALUABLE_Z = 5.0


def standardised_residuals(table: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """z of each row of a target comparison (rows without a reference interval give NaN). A median that is
    not reached counts as the follow-up horizon."""
    simulated = table["simulated"].to_numpy(float).copy()
    simulated[np.isposinf(simulated)] = horizon_days
    published_sd = (table["reference_high"] - table["reference_low"]).to_numpy(float) / (2 * _Z95)
    simulated_sd = (table["simulated_ci_high"] - table["simulated_ci_low"]).to_numpy(float) / (2 * _Z95)
    simulated_sd = np.where(np.isfinite(simulated_sd), simulated_sd, 0.0)
    z = (simulated - table["published"].to_numpy(float)) / np.sqrt(published_sd**2 + simulated_sd**2)
    z[np.isnan(simulated) & np.isfinite(published_sd)] = _UNEVALUABLE_Z
    return z


def target_loss(z: np.ndarray, huber_z: float | None = HUBER_Z) -> np.ndarray:
    """Huber loss of standardised residuals: z²/2 for |z| <= huber_z, huber_z (|z| - huber_z / 2) beyond (None:
    z²/2 throughout, the Gaussian loss; NaN stays NaN)."""
    size = np.abs(np.asarray(z, dtype=float))
    if huber_z is None:
        return 0.5 * size**2
    return np.where(size <= huber_z, 0.5 * size**2, huber_z * (size - 0.5 * huber_z))


def target_losses(comparison: pd.DataFrame, huber_z: float | None = HUBER_Z) -> np.ndarray:
    """:func:`target_loss` of each row of a comparison whose target is used, 0 for the others."""
    z = np.nan_to_num(comparison["z"].to_numpy(float), nan=0.0)
    return np.where(comparison["used"].to_numpy(bool), target_loss(z, huber_z), 0.0)


def huber_weights(z: np.ndarray, huber_z: float | None = HUBER_Z) -> np.ndarray:
    """Iteratively reweighted least-squares weights of the Huber loss, min(1, huber_z / |z|) (None: 1): sum(w z²)/2
    has the Huber loss's gradient at z, so a Gauss-Newton step on residuals scaled by sqrt(w) descends it."""
    size = np.abs(np.asarray(z, dtype=float))
    if huber_z is None:
        return np.ones_like(size)
    return huber_z / np.maximum(size, huber_z)


def check_prior_sds(prior_sd: dict[str, float], fitted: Sequence[str]) -> None:
    """A prior SD must be for a fitted parameter and a positive number of decades; ValueError otherwise."""
    for name, decades in prior_sd.items():
        if name not in fitted:
            raise ValueError(f"a prior SD for {name}, which is not fitted (fitted: "
                             f"{', '.join(fitted) or 'none named'})")
        if not (math.isfinite(decades) and decades > 0.0):
            raise ValueError(f"prior SD {name}={decades:g}: expected a positive number of log10 decades")


@dataclass
class CalibrationObjective:
    """Objective over ``protocols`` for the calibratable parameters ``names``, evaluated at log10 deviations
    from the literature values (0 = literature). ``n_patients``, ``oversampling`` (see
    :func:`~leukosim.calibration.validate.cohort_size`; 0: ``n_patients`` for every protocol) and ``seed`` fix
    the virtual cohorts."""

    protocols: list[Protocol]
    names: list[str]
    n_patients: int
    seed: int
    base: ParameterSet | None = None
    prior_sd_decades: float = PRIOR_SD_DECADES
    oversampling: float = 0.0
    huber_z: float | None = HUBER_Z
    #: log10 deviations from the literature values of parameters held at values other than the literature ones
    #: in ``base`` (not fitted): their prior penalty is a constant of the loss, kept so losses compare across fits
    held_decades: tuple[float, ...] = ()
    #: prior SD (log10 decades) of named fitted parameters in place of ``prior_sd_decades``, as NONMEM's $PRIOR:
    #: wider for a value the literature does not measure
    prior_sd: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0

    def __post_init__(self) -> None:
        self.base = self.base or literature_parameters()
        unknown = [name for name in self.names if name not in CALIBRATABLE]
        if unknown:
            raise ValueError(f"not calibratable parameters: {', '.join(unknown)}")
        check_prior_sds(self.prior_sd, self.names)

    def prior_sds(self) -> np.ndarray:
        """Prior SD (log10 decades) of each fitted parameter, then of each held one."""
        fitted = [self.prior_sd.get(name, self.prior_sd_decades) for name in self.names]
        return np.array(fitted + [self.prior_sd_decades] * len(self.held_decades))

    def parameters(self, decades: np.ndarray, name: str = "candidate") -> ParameterSet:
        """The parameter set at log10 deviations ``decades`` (one per name) from the base values."""
        values = {n: self.base[n] * 10.0 ** float(d) for n, d in zip(self.names, decades)}
        return self.base.replace(name=name, **values)

    def comparison(self, parameters: ParameterSet) -> pd.DataFrame:
        """Every calibration target's comparison at ``parameters``, with its standardised residual ``z``
        (targets flagged not to calibrate and targets without an interval are kept, with ``used`` False)."""
        table = validation_table(parameters, self.n_patients, self.seed, self.protocols, self.oversampling)
        horizon = {protocol.name: float(protocol.follow_up_days) for protocol in self.protocols}
        table["z"] = np.concatenate([standardised_residuals(rows, horizon[name])
                                     for name, rows in table.groupby("protocol", sort=False)])
        table["used"] = np.isfinite(table["z"].to_numpy(float)) & table["calibrate"].to_numpy(bool)
        return table

    def data_loss(self, comparison: pd.DataFrame) -> float:
        """Summed :func:`target_loss` of the used targets, plus ``FAILED_PATIENT_LOSS`` per patient whose
        simulation failed. Huber, not redescending: a loss that stops growing (Cauchy, Tukey) lets the fit give
        up a whole protocol to gain small improvements elsewhere."""
        losses = target_losses(comparison, self.huber_z)[comparison["used"].to_numpy(bool)]
        failed = float(failed_patients(comparison).sum())
        return float(np.sum(losses)) + FAILED_PATIENT_LOSS * failed

    def loss(self, comparison: pd.DataFrame, decades: np.ndarray) -> float:
        """Data loss plus the prior penalty on the log10 deviations (fitted and held)."""
        deviations = np.concatenate([np.asarray(decades, dtype=float), self.held_decades])
        return self.data_loss(comparison) + 0.5 * float(np.sum((deviations / self.prior_sds()) ** 2))

    def __call__(self, decades: np.ndarray) -> float:
        self.evaluations += 1
        return self.loss(self.comparison(self.parameters(np.asarray(decades))), np.asarray(decades))
