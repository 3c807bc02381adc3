"""Joint calibration of the calibratable parameters to every calibration protocol's targets.

Three stages, all on the objective of :mod:`leukosim.calibration.objective` with common random numbers:

1. **Screening** (identifiability): each calibratable parameter is moved one at a time by a factor of
   ``screen_factor`` up and down, within its bounds; the summed absolute change of the targets' losses is its
   sensitivity.
   Parameters whose sensitivity stays below ``min_sensitivity`` cannot be identified from the calibration set
   and stay at their literature values. Of the rest, :func:`select_parameters` picks up to ``max_parameters``:
   first the parameter that moves each badly missed target most (so every mechanism with a missed target gets
   a lever), then the most sensitive others (more would be poorly identified with this budget).
2. **Screening descent** (``descent_rounds``): the screening moves that lowered the data loss are taken one at
   a time, best first, each kept only if the loss with the prior falls (:func:`screening_descent`); a
   Gauss-Newton step on the screening's secant Jacobian moves every parameter at once (:func:`joint_step`)
   and wins if it goes lower; then screening again from the point reached. A round that keeps nothing halves
   the step (in decades) down to ``final_screen_factor``; a round at that factor that keeps nothing ends the
   descent. The parameters moved join the fit.
3. **Fit** (optional, ``max_evaluations`` > 0): CMA-ES (the ``cma`` package, seeded, so a fit is reproducible)
   on the fitted parameters' log10 deviations, within their bounds (registry bounds, else three decades either
   side).

All start from the ``start`` parameter set, e.g. the previous calibration when the model has changed; the
parameters it moved join the fit (or, with ``hold_start`` and a list of ``parameters``, keep their start values
while only the listed ones are fitted), and the prior stays on the literature values.

The result is a parameter-set file (see :func:`leukosim.model.registry.load_parameter_set`) that also records
its settings and a fit report, so ``leukosim calibrate --reproduce FILE`` re-runs it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from ..io.jsonsafe import json_safe
from ..model.registry import (
    CALIBRATABLE, DEFAULT, INDEX, LITERATURE, PARAMETERS, ParameterSet, ParameterSetError, literature_parameters,
    load_parameter_set, parameter_set_file,
)
from ..protocol.load import bundled_protocols, load_protocol
from ..protocol.schema import Protocol
from .objective import (
    HUBER_Z, PRIOR_SD_DECADES, CalibrationObjective, check_prior_sds, huber_weights, target_losses,
)
from .validate import failed_patients
from ..notice import NOTICE

__all__ = ["CalibrationSettings", "Screening", "SettingsError", "calibrate", "calibration_protocols",
           "check_initial_estimates", "check_settings", "descend", "fit_objective", "joint_step",
           "recorded_objective", "screen", "screening_descent", "select_parameters", "settings_from_file",
           "write_parameter_set"]

_DEFAULT_SPAN_DECADES = 3.0


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything that determines a calibration result. The defaults continue the chain of shipped sets: one
    round of screening descent from the shipped default. Each shipped set records its own settings
    (:func:`settings_from_file`)."""

    #: the name of the result (the CLI takes it from the output file); not the shipped default's, which a
    #: new calibration would otherwise carry
    name: str = "calibrated"
    n_patients: int = 1000
    seed: int = 20261123
    protocols: tuple[str, ...] = ()
    screen_factor: float = 3.0
    min_sensitivity: float = 0.5
    max_parameters: int = 26
    parameters: tuple[str, ...] = ()
    max_evaluations: int = 0
    initial_step_decades: float = 0.15
    optimiser_seed: int = 1
    prior_sd_decades: float = PRIOR_SD_DECADES
    base: str = LITERATURE
    #: the parameter set (shipped name or file) whose values start the screening and the search; the prior
    #: stays centred on ``base``
    start: str = DEFAULT
    #: rounds of screening descent before the search: screen at the current point, then take the screening moves
    #: that lowered the data loss one at a time, best first, each kept if it lowers the loss with the prior
    #: (see :func:`descend` for the step and when it stops early). The parameters moved join the fit
    descent_rounds: int = 1
    #: smallest screening factor of the descent: a round that keeps no move is followed by one at the square
    #: root of its factor, down to this one (equal to ``screen_factor``: one step size throughout)
    final_screen_factor: float = 1.5
    #: each descent round also tries a Gauss-Newton step on the screening's secant Jacobian (see
    #: :func:`joint_step`) and keeps it when it beats the one-at-a-time moves
    joint_steps: bool = True
    #: each protocol's cohort is at least this many times its largest published cohort, as in validation
    #: (:func:`~leukosim.calibration.validate.cohort_size`); 0: ``n_patients`` for every protocol
    cohort_oversampling: float = 4.0
    #: residual (SDs) beyond which a target's loss grows linearly (see
    #: :func:`~leukosim.calibration.objective.target_loss`); None: the Gaussian loss throughout
    huber_z: float | None = HUBER_Z
    #: with ``parameters`` given, fit only those and keep every other parameter at its value in the start set
    #: (False: the parameters the start set moved join the fit)
    hold_start: bool = False
    #: initial estimates: values of fitted parameters at which the search starts in place of the start set's,
    #: as NONMEM's $THETA initial estimates (see :func:`check_initial_estimates`)
    initial: dict[str, float] = field(default_factory=dict)
    #: prior SD (log10 decades) of named fitted parameters in place of ``prior_sd_decades``, as NONMEM's $PRIOR
    #: (see :func:`check_prior_sds`)
    prior_sd: dict[str, float] = field(default_factory=dict)


def check_initial_estimates(initial: dict[str, float], parameters: tuple[str, ...]) -> None:
    """An initial estimate must be for a parameter named to fit and within that parameter's bounds; ValueError
    otherwise."""
    for name, value in initial.items():
        if name not in parameters:
            raise ValueError(f"an initial estimate for {name}, which is not fitted (fitted: "
                             f"{', '.join(parameters) or 'none named'})")
        literature = PARAMETERS[INDEX[name]].value
        low, high = (literature * 10.0**d for d in _bounds(name))
        if not low <= value <= high:
            raise ValueError(f"initial estimate {name}={value:g} outside its bounds [{low:g}, {high:g}]")


class SettingsError(ValueError):
    """A calibration setting a run cannot start with; ``setting`` names the :class:`CalibrationSettings` field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting, self.message = setting, message


def check_settings(settings: CalibrationSettings) -> None:
    """Raise :class:`SettingsError` for the first setting a calibration cannot start with: a base other than the
    literature set (the prior is centred on it), a start set that does not load, a protocol without calibration
    targets, a parameter that is not calibratable, ``hold_start``
    without parameters, an initial estimate :func:`check_initial_estimates` or a prior SD :func:`check_prior_sds`
    refuses."""
    if settings.base != LITERATURE:
        raise SettingsError("base", f"expected {LITERATURE!r} (calibration measures every parameter from the "
                                    f"literature values), got {settings.base!r}")
    try:
        load_parameter_set(settings.start)
    except ParameterSetError as error:
        raise SettingsError("start", str(error)) from None
    try:
        calibration_protocols(settings.protocols)
    except ValueError as error:
        raise SettingsError("protocols", str(error)) from None
    unknown = [name for name in settings.parameters if name not in CALIBRATABLE]
    if unknown:
        raise SettingsError("parameters", f"not calibratable: {', '.join(unknown)} (`leukosim params` lists "
                                          "which are)")
    if settings.hold_start and not settings.parameters:
        raise SettingsError("hold_start", "name the parameters to fit with --parameter")
    try:
        check_initial_estimates(settings.initial, settings.parameters)
    except ValueError as error:
        raise SettingsError("initial", str(error)) from None
    try:
        check_prior_sds(settings.prior_sd, settings.parameters)
    except ValueError as error:
        raise SettingsError("prior_sd", str(error)) from None


def calibration_protocols(names: tuple[str, ...] = ()) -> list[Protocol]:
    """The named bundled protocols, or every bundled protocol with calibration targets; a name that is not a
    bundled protocol with calibration targets is a ValueError."""
    protocols = [load_protocol(name) for name in bundled_protocols()]
    with_targets = {p.name: p for p in protocols if any(t.calibrate for t in p.targets)}
    unknown = [name for name in names if name not in with_targets]
    if unknown:
        raise ValueError(f"no bundled protocol with calibration targets is called {', '.join(unknown)} "
                         f"(expected one of: {', '.join(with_targets)})")
    return [with_targets[name] for name in names] if names else list(with_targets.values())


def _bounds(name: str) -> tuple[float, float]:
    """log10 deviation bounds of a parameter from its literature value."""
    parameter = PARAMETERS[INDEX[name]]
    if parameter.bounds is None or parameter.value <= 0:
        return -_DEFAULT_SPAN_DECADES, _DEFAULT_SPAN_DECADES
    low, high = parameter.bounds
    return (math.log10(low / parameter.value) if low > 0 else -_DEFAULT_SPAN_DECADES,
            math.log10(high / parameter.value))


def _decades(parameters: ParameterSet, names: list[str]) -> np.ndarray:
    """log10 deviations of ``parameters`` from the literature values at ``names``, within their bounds."""
    literature = literature_parameters()
    return np.array([np.clip(math.log10(parameters[n] / literature[n]), *_bounds(n)) for n in names])


class Screening(NamedTuple):
    """What one-at-a-time screening at a point learnt (see :func:`screen`)."""

    #: parameter, loss_up, loss_down (change of the data loss), sensitivity
    table: pd.DataFrame
    #: per-target loss changes of each parameter's larger move (parameters x targets)
    effects: np.ndarray
    #: the targets' losses at the point
    base_losses: np.ndarray
    #: the used targets' standardised residuals at the point
    residuals: np.ndarray
    #: secant Jacobian of those residuals in log10 units from the moves up and down (used targets x parameters)
    jacobian: np.ndarray


def screen(objective: CalibrationObjective, factor: float, start: np.ndarray | None = None,
           progress: Callable[[str], None] | None = None) -> Screening:
    """One-at-a-time screening of ``objective.names`` around ``start`` (log10 deviations from the literature
    values; default 0): each parameter multiplied and divided by ``factor`` (at most to its bounds).

    The table's sensitivity is the larger, over the two moves, of the summed absolute change of the targets'
    losses, so a parameter that helps one target and hurts another still counts; the per-target effects make
    sure every badly missed target gets a parameter that moves it; the residuals and their secant Jacobian give
    :func:`joint_step` its linear model."""
    step = math.log10(factor)
    zero = np.zeros(len(objective.names)) if start is None else np.asarray(start, dtype=float)

    def evaluate(decades: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        objective.evaluations += 1
        comparison = objective.comparison(objective.parameters(decades))
        return target_losses(comparison, objective.huber_z), comparison.loc[comparison["used"], "z"].to_numpy(float)

    base, z_base = evaluate(zero)
    rows, effects, jacobian = [], [], []
    for k, name in enumerate(objective.names):
        moves, z_moves, offsets = [], [], []
        for sign in (1.0, -1.0):
            decades = zero.copy()
            decades[k] = np.clip(zero[k] + sign * step, *_bounds(name))
            losses, z = evaluate(decades)
            moves.append(losses - base)
            z_moves.append(z)
            offsets.append(decades[k] - zero[k])
        span = offsets[0] - offsets[1]
        jacobian.append((z_moves[0] - z_moves[1]) / span if span > 0.0 else np.zeros_like(z_base))
        influence = [float(np.abs(move).sum()) for move in moves]
        effects.append(moves[int(np.argmax(influence))])
        rows.append({"parameter": name, "loss_up": float(moves[0].sum()), "loss_down": float(moves[1].sum()),
                     "sensitivity": max(influence)})
        if progress is not None:
            progress(f"screened {name}: {rows[-1]['sensitivity']:.3g}")
    return Screening(pd.DataFrame(rows), np.array(effects), base, z_base, np.array(jacobian).T)


def select_parameters(screening: pd.DataFrame, effects: np.ndarray, base_losses: np.ndarray, min_sensitivity: float,
                      max_parameters: int) -> list[str]:
    """Parameters to fit: first, for each target missed by more than 2 SD (loss > 2) in decreasing order of
    loss, the parameter that moves that target most (if sensitive at all); then the most sensitive others, up
    to ``max_parameters``."""
    sensitive = screening["sensitivity"].to_numpy(float) >= min_sensitivity
    chosen: list[int] = []
    for target in np.argsort(-base_losses, kind="stable"):
        if base_losses[target] <= 2.0 or len(chosen) >= max_parameters:
            break
        movers = np.where(sensitive, np.abs(effects[:, target]), 0.0)
        best = int(np.argmax(movers))
        if movers[best] > 0.0 and best not in chosen:
            chosen.append(best)
    for k in np.argsort(-screening["sensitivity"].to_numpy(float), kind="stable"):
        if len(chosen) >= max_parameters or not sensitive[k]:
            break
        if k not in chosen:
            chosen.append(int(k))
    return [str(screening["parameter"].iloc[k]) for k in chosen]


def screening_descent(objective: CalibrationObjective, x0: np.ndarray, screening: pd.DataFrame, factor: float,
                      progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, float]:
    """Greedy descent along the screening moves: for each of ``objective.names`` whose move up or down (by
    ``factor``, within bounds) lowered the data loss in screening, best first, move it and keep the move if the
    objective (data loss and prior) falls. Returns the point reached and its objective (one evaluation per move
    tried, plus one at ``x0``)."""
    rows = screening.set_index("parameter").loc[objective.names]
    gains = np.minimum(rows["loss_up"].to_numpy(float), rows["loss_down"].to_numpy(float))
    step = math.log10(factor)
    x, best = np.array(x0, dtype=float), objective(x0)
    for k in np.argsort(gains, kind="stable"):
        if gains[k] >= 0.0:
            break
        sign = 1.0 if rows["loss_up"].iloc[k] <= rows["loss_down"].iloc[k] else -1.0
        trial = x.copy()
        trial[k] = np.clip(x0[k] + sign * step, *_bounds(objective.names[k]))
        loss = objective(trial)
        if loss < best:
            x, best = trial, loss
        if progress is not None:
            progress(f"descent {objective.names[k]} x{factor ** sign:.3g}: {loss:.4g} (best {best:.4g})")
    return x, best


def joint_step(objective: CalibrationObjective, x0: np.ndarray, screening: Screening, factor: float,
               progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, float]:
    """A Gauss-Newton step from ``x0`` that moves every parameter at once: the bounded linear least-squares
    solution (SciPy ``lsq_linear``) of the screening's residuals, their secant Jacobian and the prior (residuals
    reweighted for the Huber loss, :func:`~leukosim.calibration.objective.huber_weights`), each
    parameter moving at most one screening step (``factor``) and within its bounds; tried at its full length,
    half and a quarter. Finds the joint moves that no single move shows (two parameters whose effects cancel on
    one target and add on another), on the screening's wide differences rather than the cohort's Monte Carlo
    granularity. Returns the best point tried and its objective (three evaluations)."""
    from scipy.optimize import lsq_linear

    step = math.log10(factor)
    bounds = np.array([_bounds(name) for name in objective.names])
    low, high = np.maximum(-step, bounds[:, 0] - x0), np.minimum(step, bounds[:, 1] - x0)
    prior_sds = objective.prior_sds()[:len(x0)]
    weight = np.sqrt(huber_weights(screening.residuals, objective.huber_z))[:, None]
    matrix = np.vstack([weight * screening.jacobian, np.diag(1.0 / prior_sds)])
    wanted = -np.concatenate([weight[:, 0] * screening.residuals, x0 / prior_sds])
    direction = lsq_linear(matrix, wanted, bounds=(low, high)).x
    best_x, best = x0, math.inf
    for fraction in (1.0, 0.5, 0.25):
        trial = np.clip(x0 + fraction * direction, bounds[:, 0], bounds[:, 1])
        loss = objective(trial)
        if loss < best:
            best_x, best = trial, loss
        if progress is not None:
            progress(f"joint step x{fraction:g} ({np.count_nonzero(direction)} parameters): {loss:.4g}")
    return best_x, best


def descend(objective: CalibrationObjective, start: np.ndarray, screen_factor: float, final_screen_factor: float,
            rounds: int, progress: Callable[[str], None] | None = None, joint_steps: bool = True
            ) -> tuple[np.ndarray, Screening]:
    """Up to ``rounds`` rounds from ``start``, each a :func:`screen` at the current point, then the better of
    :func:`screening_descent` and (with ``joint_steps``) :func:`joint_step` from it; a round that improves
    nothing is followed by one at the square root of its factor (down to ``final_screen_factor``), and one at
    that factor that improves nothing ends the descent. Returns the point reached and the last screening at
    ``screen_factor`` (identifiability is judged at that factor)."""
    point, factor = np.asarray(start, dtype=float), screen_factor
    for round_ in range(rounds + 1):
        screened = screen(objective, factor, point, progress)
        if factor == screen_factor:
            identifiability = screened
        if round_ == rounds:
            break
        reached, reached_loss = screening_descent(objective, point, screened.table, factor, progress)
        if joint_steps:
            joint, joint_loss = joint_step(objective, point, screened, factor, progress)
            if joint_loss < reached_loss:
                reached = joint
        if np.array_equal(reached, point):
            if factor <= final_screen_factor:
                break
            factor = max(final_screen_factor, math.sqrt(factor))
        point = reached
    return point, identifiability


def _report_targets(before: pd.DataFrame, after: pd.DataFrame) -> list[dict[str, object]]:
    rows = []
    for b, a in zip(before.itertuples(), after.itertuples()):
        rows.append({"protocol": a.protocol, "target": a.target, "arm": a.arm, "published": float(a.published),
                     "reference": [float(a.reference_low), float(a.reference_high)],
                     "simulated_literature": float(b.simulated), "simulated_calibrated": float(a.simulated),
                     "z_literature": float(b.z), "z_calibrated": float(a.z), "used": bool(a.used),
                     "hit": None if pd.isna(a.hit) else bool(a.hit)})
    return rows


def fit_objective(settings: CalibrationSettings, protocols: list[Protocol], names: list[str], held: list[str],
                  around: ParameterSet) -> CalibrationObjective:
    """The objective of a fit of ``names`` with ``held`` kept at their values in ``around`` (the start set, or
    the result: the two agree on them). The fitted parameters' deviations are measured from their literature
    values, whatever ``around`` holds."""
    literature = literature_parameters()
    base = around.replace(name="held", **{n: literature[n] for n in names}) if held else literature
    return CalibrationObjective(protocols, names, settings.n_patients, settings.seed, base=base,
                                prior_sd_decades=settings.prior_sd_decades,
                                oversampling=settings.cohort_oversampling, huber_z=settings.huber_z,
                                held_decades=tuple(_decades(around, held)), prior_sd=dict(settings.prior_sd))


def recorded_objective(source: str | Path) -> tuple[CalibrationObjective, ParameterSet, np.ndarray]:
    """The objective a recorded calibration (a parameter-set file, or a shipped set by name) minimised, the set
    it reached and that set's log10 deviations from the literature values of the fitted parameters: the loss
    there, ``objective.loss(objective.comparison(fitted), decades)``, is the recorded ``loss_calibrated``."""
    settings = settings_from_file(source)
    recorded = json.loads(parameter_set_file(source).read_text())["fit"]
    names, held = list(recorded["fitted_parameters"]), list(recorded["held_parameters"])
    fitted = load_parameter_set(source)
    objective = fit_objective(settings, calibration_protocols(settings.protocols), names, held, fitted)
    return objective, fitted, _decades(fitted, names)


def calibrate(settings: CalibrationSettings, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Run a calibration and return the parameter-set document (``name``, ``values``, ``settings``, ``fit``)."""
    import cma

    check_settings(settings)
    protocols = calibration_protocols(settings.protocols)
    calibratable = list(CALIBRATABLE)
    names = list(settings.parameters)
    literature = literature_parameters()
    start_set = load_parameter_set(settings.start).replace(**settings.initial)

    screening: pd.DataFrame | None = None
    descended: dict[str, float] = {}
    if not names:
        screener = fit_objective(settings, protocols, calibratable, [], start_set)
        origin = _decades(start_set, calibratable)
        point, screened = descend(screener, origin, settings.screen_factor, settings.final_screen_factor,
                                  settings.descent_rounds, progress, settings.joint_steps)
        screening = screened.table
        names = select_parameters(screening, screened.effects, screened.base_losses, settings.min_sensitivity,
                                  settings.max_parameters)
        descended = {n: float(d) for n, d, d0 in zip(calibratable, point, origin) if d != d0}
        names += [n for n in descended if n not in names]
    moved = [n for n in calibratable if start_set[n] != literature[n] and n not in names]
    held = moved if settings.hold_start else []
    if not held:
        names += moved
    if not names:
        raise ValueError("no parameter is sensitive enough to fit")
    objective = fit_objective(settings, protocols, names, held, start_set)
    bounds = np.array([_bounds(name) for name in names])
    x0 = np.array([descended.get(n, d) for n, d in zip(names, _decades(start_set, names))])
    start_loss = objective(x0)
    strategy = cma.CMAEvolutionStrategy(x0, settings.initial_step_decades, {
        "bounds": [list(bounds[:, 0]), list(bounds[:, 1])], "seed": settings.optimiser_seed,
        "maxfevals": settings.max_evaluations, "verbose": -9, "CMA_diagonal": False,
    })
    best_x, best_loss = x0, start_loss
    while settings.max_evaluations > 0 and not strategy.stop():  # 0: screening (and descent) only
        candidates = strategy.ask()
        losses = [objective(np.asarray(x)) for x in candidates]
        strategy.tell(candidates, losses)
        k = int(np.argmin(losses))
        if losses[k] < best_loss:
            best_x, best_loss = np.asarray(candidates[k], dtype=float), float(losses[k])
        if progress is not None:
            progress(f"evaluations {objective.evaluations}: best loss {best_loss:.4g}")
    fitted = objective.parameters(best_x, settings.name)
    before = objective.comparison(literature)
    after = objective.comparison(fitted)
    parameter_rows = []
    for name, decades, (low, high) in zip(names, best_x, bounds):
        parameter = PARAMETERS[INDEX[name]]
        parameter_rows.append({"name": name, "unit": parameter.unit, "literature": literature[name],
                               "calibrated": fitted[name], "log10_change": float(decades),
                               "bounds": [literature[name] * 10**low, literature[name] * 10**high],
                               "at_bound": bool(min(decades - low, high - decades) < 0.01),
                               "source": parameter.source})
    return {
        "name": settings.name,
        "base": LITERATURE,
        "values": {**{n: start_set[n] for n in held}, **{row["name"]: row["calibrated"] for row in parameter_rows}},
        "settings": asdict(settings),
        "fit": {
            "fitted_parameters": names,
            "held_parameters": held,
            "loss_literature": objective.data_loss(before),  # no deviation, no prior penalty
            "loss_calibrated": objective.loss(after, best_x),
            "evaluations": objective.evaluations + (0 if screening is None else screener.evaluations),
            "targets_used": int(after["used"].sum()),
            "hits_literature": int(before["hit"].fillna(False).sum()),
            "hits_calibrated": int(after["hit"].fillna(False).sum()),
            "targets_with_interval": int(after["hit"].notna().sum()),
            "failed_patients_literature": {k: int(v) for k, v in failed_patients(before).items()},
            "failed_patients_calibrated": {k: int(v) for k, v in failed_patients(after).items()},
            "parameters": parameter_rows,
            "targets": _report_targets(before, after),
            "screening": None if screening is None else screening.sort_values(
                "sensitivity", ascending=False, kind="stable").to_dict(orient="records"),
            "not_identifiable": [] if screening is None else
            list(screening.loc[screening["sensitivity"] < settings.min_sensitivity, "parameter"]),
        },
        "notice": NOTICE,
    }


def write_parameter_set(document: dict[str, object], path: str | Path) -> Path:
    """Write a calibration result as a parameter-set file (strict JSON)."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(document), indent=1, allow_nan=False) + "\n")
    return path


def settings_from_file(source: str | Path) -> CalibrationSettings:
    """The settings recorded in a parameter-set file (or a shipped set, by name), to reproduce it."""
    recorded = json.loads(parameter_set_file(source).read_text())["settings"]
    recorded.setdefault("start", LITERATURE)  # the first calibrations started from the literature values
    recorded.setdefault("descent_rounds", 0)  # sets calibrated before screening descent existed had none
    recorded.setdefault("final_screen_factor", recorded["screen_factor"])  # ... and one step size
    recorded.setdefault("joint_steps", False)  # ... and no joint steps
    recorded.setdefault("cohort_oversampling", 0.0)  # ... and one cohort size for every protocol
    recorded.setdefault("huber_z", None)  # sets calibrated before calibrated-0.14 had the Gaussian loss
    recorded.setdefault("initial", {})  # ... and before calibrated-0.19 no initial estimates
    recorded.setdefault("prior_sd", {})  # ... and before calibrated-0.21 one prior SD for every parameter
    return CalibrationSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
