"""The calibration objective: how far one parameter set's simulated targets are from the published ones, across
every calibration protocol at once.

Each target contributes the Gaussian loss z²/2 of its standardised residual
z = (simulated - published) / sqrt(s_published² + s_simulated²), where s is the half-width of the 95% interval
over 1.96 (published: the reference interval of :mod:`leukosim.endpoints.targets`; simulated: the Monte Carlo
CI). A Gaussian prior on each fitted parameter's log10 deviation from its literature value (SD
``PRIOR_SD_DECADES``) makes the fit a maximum a posteriori estimate, so parameters the targets cannot identify
stay at their literature values. Common random numbers: every evaluation simulates the same virtual patients
(same seed), so the objective changes only through the parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.registry import PARAMETERS, ParameterSet, literature_parameters
from ..protocol.schema import Protocol
from .validate import failed_patients, validation_table

__all__ = ["CalibrationObjective", "FAILED_PATIENT_LOSS", "PRIOR_SD_DECADES", "standardised_residuals"]

PRIOR_SD_DECADES = 0.5  # a factor of 10 away from the literature value is 2 prior SDs
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
    evaluations: int = 0

    def __post_init__(self) -> None:
        self.base = self.base or literature_parameters()
        calibratable = {p.name for p in PARAMETERS if p.calibrate}
        unknown = [name for name in self.names if name not in calibratable]
        if unknown:
            raise ValueError(f"not calibratable parameters: {', '.join(unknown)}")

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

    @staticmethod
    def data_loss(comparison: pd.DataFrame) -> float:
        """Gaussian loss (half the sum of squared standardised residuals) of the used targets, plus
        ``FAILED_PATIENT_LOSS`` per patient whose simulation failed. Not a robust loss: a robust one lets the
        fit give up a whole protocol to gain small improvements elsewhere."""
        z = comparison.loc[comparison["used"], "z"].to_numpy(float)
        return 0.5 * float(np.sum(z**2)) + FAILED_PATIENT_LOSS * float(failed_patients(comparison).sum())

    def loss(self, comparison: pd.DataFrame, decades: np.ndarray) -> float:
        """Data loss plus the prior penalty on the log10 deviations."""
        return self.data_loss(comparison) + 0.5 * float(np.sum((np.asarray(decades) / self.prior_sd_decades) ** 2))

    def __call__(self, decades: np.ndarray) -> float:
        self.evaluations += 1
        return self.loss(self.comparison(self.parameters(np.asarray(decades))), np.asarray(decades))
