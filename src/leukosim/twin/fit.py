"""Maximum a posteriori estimate of one patient's random effects from his observations, with the population
distribution as prior and a Laplace (inverse Hessian) approximation of the posterior.

Structural model: the patient's most probable course, i.e. the deterministic course
(:func:`leukosim.engine.reference.course_of`: every stochastic layer and clinical management off) along the
responder path of his arm, with blinatumomab as the data's infusion records (so with their interruptions), each
leukemic clone extinct when its extinction probability reaches 1/2 (the median of the extinction layer; without
it a cured patient's residual leukemia would regrow in the model), integrated by the compiled engine and
extended with no treatment to the last observation. Observations: MRD (DVID 1, the marrow leukemic fraction;
times the blood-to-marrow ratio for a blood sample of the path), CAR transgene (2), B cells (3), blinatumomab
(4) and inotuzumab (5) concentrations.

Residual error: log-normal, ``ln DV = ln f + e`` with ``e ~ N(0, RESIDUAL_SD[DVID]^2)``; observations below
their limit by Beal's M3 method (likelihood ``P(ln DV < ln LLOQ)``). Prior: ``eta ~ N(0, omega^2)`` with the
registry's ``omega = sqrt(ln(1 + iiv_cv^2))``. Objective = -log posterior (constants dropped).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import log_ndtr

from ..engine.integrator import N_RECORD, N_RULE_COLUMNS, RECORD_NAMES, integrate_batch
from ..engine.reference import course_of, responder_path
from ..io.nonmem import ENDPOINTS
from ..engine.extinction import extinction_thresholds
from ..model.layout import C_CLONE_SIZE, C_EXTINCTION_THRESHOLD, N_CLASSES, N_REGISTRY, U_BLIN_RATE
from ..model.registry import INDEX, PARAMETERS, ParameterSet, default_parameters
from ..population.covariates import BOOLEAN_COVARIATES, Covariates, latent_law, sample_distribution
from ..population.individual import IIV_OMEGA, latent_effects_at_median, parameters_from_etas
from ..population.streams import Stream
from ..protocol.schema import LATENT_LIMITS, RELAPSED_DISEASE, Arm, Population, Protocol
from .data import PatientData

__all__ = ["RESIDUAL_SD", "INFORMED_BY", "PatientFit", "PatientModel", "fit_patient", "patient_covariates",
           "NOTICE"]

NOTICE = ("Research use only: a model-based estimate for in-silico research, not a medical device and not advice "
          "for any individual patient.")
#: Log-scale SD of the residual error by DVID (assumptions [U]: flow/PCR MRD replicate and sampling error about
#: 0.5 ln (x1.6); qPCR transgene and flow B-cell counts 0.3; ligand-binding drug assays 0.2).
RESIDUAL_SD: dict[int, float] = {1: 0.5, 2: 0.3, 3: 0.3, 4: 0.2, 5: 0.2}
#: Random effects each observation type informs, and that the fit estimates when the type is observed.
#: MRD: net leukemic growth (the kill parameters are population-level); CAR transgene: expansion, contraction
#: and memory decay (peak, fall and plateau slope of the curve; memory formation, confounded with memory decay
#: over a first year, stays at its population value); B cells: CAR-T persistence, already listed;
#: drug concentrations: clearance.
INFORMED_BY: dict[int, tuple[str, ...]] = {
    1: ("leukemia_net_growth",),
    2: ("car_expansion_rate", "car_contraction_rate", "car_memory_decay"),
    3: (),
    4: ("blin_clearance",),
    5: ("ino_clearance_ss",),
}
#: Record column of each observation type (MRD: marrow leukemic fraction; others as the NONMEM export).
_RECORD = {e.dvid: RECORD_NAMES.index("marrow_leukemic_fraction" if e.dvid == 1 else e.source.split()[-1])
           for e in ENDPOINTS}
_SEED = 0  # random streams of the deterministic course (enrollment subclone sizes only)
_MEDIAN_EXTINCTION = 0.5  # a clone goes extinct when its extinction probability reaches 1/2
_GRADIENT_STEP = 1e-2  # eta units (ln parameter); above the engine's ~1e-5 relative solution noise
_HESSIAN_STEP = 2e-2
_BOUND = 5.0  # etas searched within +-5 omega
_COVARIATE_SOURCES = {"age_years": "AGE", "male": "SEX", "height_cm": "HT", "weight_kg": "WT", "bsa_m2": "BSA",
                      "marrow_blasts_percent": "BLAST", "wbc_per_uL": "WBC", "prior_hsct": "PHSCT",
                      "late_relapse": "LATE"}


def patient_covariates(data: PatientData, population: Population,
                       parameters: ParameterSet) -> tuple[Covariates, dict[str, str]]:
    """The patient's covariates (one row, patient id 0) and where each comes from: measured ones from the data
    file (baseline marrow blasts from BLAST, not from the first MRD), latent ones (antigen-negative subclone
    shares, T-cell fitness, chemosensitivity, transplant access) at the median of the population's law, prior
    blinatumomab as the population's majority."""
    values: dict[str, NDArray] = {"patient_id": np.zeros(1, dtype=np.int64)}
    sources: dict[str, str] = {}
    for name, column in _COVARIATE_SOURCES.items():
        value = data.baseline[column]
        values[name] = np.array([value == 1 if name in BOOLEAN_COVARIATES else value])
        sources[name] = f"data {column}"
    for name in LATENT_LIMITS:
        values[name] = sample_distribution(latent_law(population, name, parameters), np.array([0.5]))
        sources[name] = "population median"
    values["prior_blinatumomab"] = np.array([population.prior_blinatumomab_fraction > 0.5])
    sources["prior_blinatumomab"] = "population majority"
    values["relapsed"] = np.array([population.disease in RELAPSED_DISEASE])
    sources["relapsed"] = "population disease stage"
    values["hsct_access_quantile"] = np.array([0.5])
    sources["hsct_access_quantile"] = "population median"
    return Covariates(**values), sources


class PatientModel:
    """Log predictions of one patient's observations and the objective, for batches of random-effect vectors
    over ``estimated`` parameters."""

    def __init__(self, protocol: Protocol, arm: Arm, covariates: Covariates, data: PatientData,
                 parameters: ParameterSet, estimated: tuple[str, ...]) -> None:
        self.protocol, self.arm, self.covariates, self.parameters = protocol, arm, covariates, parameters
        self.estimated = estimated
        self.columns = np.array([INDEX[name] for name in estimated], dtype=np.int64)
        self.omega = IIV_OMEGA[self.columns]
        self.phases = responder_path(arm, bool(covariates.prior_hsct[0]))
        self.record_times, self.position = np.unique(data.time, return_inverse=True)
        self.readout = np.array([_RECORD[d] for d in data.dvid])
        self.scale = np.where(data.dvid == 1, self._mrd_sample_scale(data.time), 1.0)
        self.log_dv = np.log(data.dv)
        self.blq = data.blq
        self.blinatumomab = data.blinatumomab
        self.sd = np.array([RESIDUAL_SD[d] for d in data.dvid])

    def _mrd_sample_scale(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Blood-to-marrow MRD ratio at times of the path's blood assessments, 1 elsewhere."""
        scale = np.ones(times.size)
        start = 0.0
        by_name = {phase.name: phase for phase in self.arm.phases}
        for name in self.phases:
            for assessment in by_name[name].assess:
                if assessment.sample == "blood":
                    at = np.isclose(times, start + assessment.day - 1.0)
                    scale[at] = self.parameters["blood_to_marrow_mrd_ratio"]
            start += by_name[name].days
        return scale

    def _schedule(self, times: NDArray[np.float64], drive: NDArray[np.float64], bolus: NDArray[np.float64],
                  t_end: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """The path's breakpoints, no treatment after ``t_end``, and blinatumomab as the data's infusions."""
        infusions = self.blinatumomab
        edges = np.unique(np.concatenate([times, [t_end], infusions[:, 0], infusions[:, 1]]))
        edges = edges[edges <= max(t_end, float(self.record_times[-1]))]
        active = np.searchsorted(times, edges, side="right") - 1
        new_drive = np.where((edges < t_end)[None, :, None], drive[:, active], 0.0)
        new_bolus = np.where(np.isin(edges, times)[None, :, None], bolus[:, active], 0.0)
        running = (infusions[:, 0][None, :] <= edges[:, None]) & (edges[:, None] < infusions[:, 1][None, :])
        new_drive[:, :, U_BLIN_RATE] = running.astype(float) @ infusions[:, 2]
        return edges, np.ascontiguousarray(new_drive), np.ascontiguousarray(new_bolus)

    def log_predictions(self, etas: NDArray[np.float64]) -> NDArray[np.float64]:
        """ln of the model value of every observation (rows: eta vectors, NaN where the solver failed)."""
        etas = np.atleast_2d(etas)
        m = etas.shape[0]
        covariates = self.covariates.take(np.zeros(m, dtype=np.int64))
        full = np.zeros((m, N_REGISTRY))
        full[:, self.columns] = etas
        p = parameters_from_etas(self.parameters, covariates, full, _SEED)
        latent_effects_at_median(p, self.parameters, covariates)  # like the latent covariates
        course = course_of(self.protocol, self.arm, covariates, p, _SEED, self.parameters, self.phases)
        stop = max(course.t_end, float(self.record_times[-1]))
        times, drive, bolus = self._schedule(course.times, course.drive, course.bolus, course.t_end)
        y, c = course.y0.copy(), course.c0.copy()
        clones = slice(C_EXTINCTION_THRESHOLD, C_EXTINCTION_THRESHOLD + N_CLASSES)
        c[:, clones] = extinction_thresholds(c[:, C_CLONE_SIZE:C_CLONE_SIZE + N_CLASSES], _MEDIAN_EXTINCTION)
        records = np.full((m, self.record_times.size, N_RECORD), np.nan)
        integrate_batch(y, course.p, c, np.ascontiguousarray(np.broadcast_to(times, (m, times.size))),
                        np.ascontiguousarray(drive), np.ascontiguousarray(bolus),
                        np.full(m, times.size, dtype=np.int64), np.full(m, stop), np.zeros((0, N_RULE_COLUMNS)),
                        _SEED, covariates.patient_id, Stream.block("extinction"), self.record_times, records)
        values = records[:, self.position, self.readout] * self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.maximum(values, 1e-300))

    def objective(self, etas: NDArray[np.float64]) -> NDArray[np.float64]:
        """-log posterior (constants dropped) of each eta vector (rows); +inf where the solver failed."""
        etas = np.atleast_2d(etas)
        mean = self.log_predictions(etas)
        z = (self.log_dv - mean) / self.sd
        data = np.where(self.blq, -log_ndtr(z), 0.5 * z**2).sum(axis=1)
        prior = 0.5 * ((etas / self.omega) ** 2).sum(axis=1)
        return np.where(np.isfinite(data), data + prior, np.inf)

    def value(self, eta: NDArray[np.float64]) -> float:
        """Objective at ``eta`` (1e12 where the solver failed, so an optimiser steps back)."""
        value = float(self.objective(eta)[0])
        return value if np.isfinite(value) else 1e12

    def value_and_gradient(self, eta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """Objective and its central-difference gradient at ``eta``, in one batch; a one-sided difference where
        the solver failed on one side, 0 where it failed on both (1e12 and no gradient where it failed at eta)."""
        k = eta.size
        h = _GRADIENT_STEP
        values = self.objective(np.vstack([eta, eta + h * np.eye(k), eta - h * np.eye(k)]))
        centre, forward, backward = values[0], values[1:k + 1], values[k + 1:]
        if not np.isfinite(centre):
            return 1e12, np.zeros(k)
        with np.errstate(invalid="ignore"):
            gradient = np.where(np.isfinite(backward), (forward - backward) / (2 * h), (forward - centre) / h)
            gradient = np.where(np.isfinite(forward), gradient, (centre - backward) / h)
        return float(centre), np.where(np.isfinite(gradient), gradient, 0.0)

    def hessian(self, eta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Finite-difference Hessian of the objective at ``eta`` (four points per pair, one batch)."""
        k = eta.size
        h = _HESSIAN_STEP
        unit = np.eye(k) * h
        pairs = [(i, j) for i in range(k) for j in range(i, k)]
        rows = [eta + si * unit[i] + sj * unit[j] for i, j in pairs for si, sj in ((1, 1), (1, -1), (-1, 1),
                                                                                     (-1, -1))]
        values = self.objective(np.array(rows)).reshape(len(pairs), 4)
        hessian = np.empty((k, k))
        for (i, j), (pp, pm, mp, mm) in zip(pairs, values):
            hessian[i, j] = hessian[j, i] = (pp - pm - mp + mm) / (4 * h * h)
        return hessian


@dataclass(frozen=True)
class PatientFit:
    """A fitted patient: covariates, MAP random effects and their Laplace posterior covariance (log scale)."""

    data_file: str
    protocol: str
    arm: str
    phases: tuple[str, ...]
    parameter_set: str
    parameter_values: tuple[float, ...]
    covariates: dict[str, float]
    covariate_sources: dict[str, str]
    estimated: tuple[str, ...]
    eta: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    omega: tuple[float, ...]
    objective: float
    converged: bool
    hessian_positive_definite: bool
    observations: dict[str, int]
    residual_sd: dict[str, float]
    notice: str = NOTICE

    @property
    def posterior_sd(self) -> NDArray[np.float64]:
        return np.sqrt(np.diag(np.array(self.covariance)))

    def parameters(self) -> ParameterSet:
        return ParameterSet(self.parameter_set, self.parameter_values)

    def patient_covariates(self) -> Covariates:
        """The patient's covariates (one row, patient id 0)."""
        values = {name: np.array([value]) for name, value in self.covariates.items()}
        for name in BOOLEAN_COVARIATES:
            values[name] = values[name].astype(bool)
        return Covariates(patient_id=np.zeros(1, dtype=np.int64), **values)

    def estimates(self) -> list[dict[str, object]]:
        """One row per estimated parameter: typical value, MAP, 95% interval (Laplace, log scale), shrinkage."""
        rows = []
        for name, eta, sd, omega in zip(self.estimated, self.eta, self.posterior_sd, self.omega):
            typical = self.parameter_values[INDEX[name]]
            rows.append({"parameter": name, "unit": PARAMETERS[INDEX[name]].unit, "typical": typical,
                         "eta": eta, "eta_sd": float(sd), "omega": omega, "map": typical * np.exp(eta),
                         "ci_low": typical * np.exp(eta - 1.96 * sd), "ci_high": typical * np.exp(eta + 1.96 * sd),
                         "shrinkage": float(1.0 - sd / omega)})
        return rows

    def to_json(self) -> str:
        document = asdict(self)
        document["estimates"] = self.estimates()
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, path: str | Path) -> PatientFit:
        """A fit written by :meth:`to_json`; ValueError naming the file and what is wrong."""
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except OSError as error:
            raise ValueError(f"{path}: cannot read ({error.strerror or error})") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON (line {error.lineno}: {error.msg})") from None
        document.pop("estimates", None)
        try:
            fit = cls(**{key: tuple(map(tuple, value)) if key == "covariance" else
                         tuple(value) if isinstance(value, list) else value for key, value in document.items()})
            fit.parameters()
            fit.patient_covariates()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a leukosim patient fit ({error})") from None
        return fit


def fit_patient(data: PatientData, protocol: Protocol, parameters: ParameterSet | None = None) -> PatientFit:
    """MAP random effects of the patient of ``data`` treated on ``protocol`` (arm ``data.arm``), the parameters
    informed by the observation types present (:data:`INFORMED_BY`) and with IIV; ValueError if the data do not
    fit the protocol."""
    parameters = parameters or default_parameters()
    if not 1 <= data.arm <= len(protocol.arms):
        raise ValueError(f"{data.path}: ARM {data.arm} but protocol {protocol.name!r} has {len(protocol.arms)} "
                         f"arm(s)")
    arm = protocol.arms[data.arm - 1]
    estimated = tuple(name for dvid in sorted(set(data.dvid.tolist())) for name in INFORMED_BY[dvid]
                      if IIV_OMEGA[INDEX[name]] > 0)
    if not estimated:
        raise ValueError(f"{data.path}: no observation informs a parameter with between-patient variability "
                         f"(observed DVIDs {sorted(set(data.dvid.tolist()))})")
    covariates, sources = patient_covariates(data, protocol.population, parameters)
    model = PatientModel(protocol, arm, covariates, data, parameters, estimated)
    bounds = [(-_BOUND * w, _BOUND * w) for w in model.omega]
    result = minimize(model.value_and_gradient, np.zeros(len(estimated)), jac=True, method="L-BFGS-B",
                      bounds=bounds, options={"maxiter": 200})
    if not result.success:  # a line search stalled on finite-difference gradients: polish without gradients
        result = minimize(model.value, result.x, method="Nelder-Mead", bounds=bounds,
                          options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400})
    eta = result.x
    hessian = model.hessian(eta)
    eigenvalues, vectors = np.linalg.eigh(hessian)
    positive = bool(np.all(eigenvalues > 0))
    # a non-positive curvature (flat or noisy direction) falls back to the prior's precision there
    floor = 1.0 / np.max(model.omega) ** 2
    covariance = (vectors / np.maximum(eigenvalues, floor)) @ vectors.T
    return PatientFit(
        data_file=str(data.path), protocol=protocol.name, arm=arm.name, phases=model.phases,
        parameter_set=parameters.name, parameter_values=parameters.values,
        covariates={name: float(column[0]) for name, column in covariates.to_dict().items() if name != "patient_id"},
        covariate_sources=sources, estimated=estimated, eta=tuple(map(float, eta)),
        covariance=tuple(tuple(map(float, row)) for row in covariance), omega=tuple(map(float, model.omega)),
        objective=float(result.fun), converged=bool(result.success), hessian_positive_definite=positive,
        observations=data.counts(), residual_sd={e.name: RESIDUAL_SD[e.dvid] for e in ENDPOINTS},
    )
