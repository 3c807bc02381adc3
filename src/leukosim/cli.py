"""The ``leukosim`` command: run a protocol, write its report, list protocols and parameters, export the protocol
schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .calibration.fit import CalibrationSettings
from .calibration.validate import COHORT_OVERSAMPLING, VALIDATION_PATIENTS
from .model.registry import (
    DEFAULT, PARAMETERS, ParameterSet, ParameterSetError, default_parameters, load_parameter_set,
    shipped_parameter_sets,
)
from .notice import NOTICE
from .protocol.load import ProtocolError, bundled_protocols, load_protocol, protocol_json_schema
from .trial import DEFAULT_CHUNK_SIZE, DEFAULT_TRAJECTORY_PATIENTS
from .twin.forecast import DEFAULT_SAMPLES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="leukosim: in-silico trials of pediatric B-ALL immunotherapy. RESEARCH USE ONLY.")
console = Console()
errors = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=2)


def _named_numbers(option: str, what: str, given: list[str]) -> dict[str, float]:
    """``NAME=NUMBER`` option values as a dict; a located error for any other form."""
    numbers = {}
    for item in given:
        name, _, value = item.partition("=")
        try:
            numbers[name.strip()] = float(value)
        except ValueError:
            _fail(f"{option}: expected NAME={what} with a number, got {item!r}")
    return numbers


_PARAMETERS_HELP = (f"parameter set: a shipped name ({', '.join(shipped_parameter_sets())}) or a JSON file "
                    f"(default: {DEFAULT} when shipped)")


def _parameter_set(source: str | None) -> ParameterSet:
    try:
        return default_parameters() if source is None else load_parameter_set(source)
    except ParameterSetError as error:
        _fail(str(error))


@app.command()
def run(
    protocol: str = typer.Argument(..., help="bundled protocol name (see `leukosim protocols`) or a YAML file"),
    patients: int = typer.Option(1000, "--patients", "-n", min=1, help="number of virtual patients"),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="random seed"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default: runs/<protocol>-seed<seed>)"),
    trajectories: int = typer.Option(DEFAULT_TRAJECTORY_PATIENTS, "--trajectories", min=0,
                                     help="record trajectories of this many patients (the lowest ids)"),
    no_report: bool = typer.Option(False, "--no-report", help="do not write report.html"),
    parameters: str = typer.Option(None, "--parameters", help=_PARAMETERS_HELP),
    workers: int = typer.Option(None, "--workers", min=1, help="compute on a local Dask cluster of this many "
                                                               "worker processes (default: this process)"),
    scheduler: str = typer.Option(None, "--scheduler", help="compute on the Dask cluster at this address"),
    chunk_size: int = typer.Option(None, "--chunk-size", min=1, help=f"patients per chunk (default "
                                  f"{DEFAULT_CHUNK_SIZE}, or the interrupted run's with --resume)"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted run in --out (same settings)"),
) -> None:
    """Simulate PROTOCOL in a virtual population and write a run directory with its report. Patients are
    computed chunk by chunk (in this process, or on Dask with --workers / --scheduler) and streamed to disk;
    the results do not depend on the backend, the workers or the chunk size."""
    from .backends import Backend, DaskBackend, LocalBackend
    from .runner import RunSettingsError, run_trial

    if workers is not None and scheduler is not None:
        _fail("--workers starts a local cluster and --scheduler uses an existing one: give one of them")
    try:
        spec = load_protocol(protocol)
    except ProtocolError as error:
        _fail(str(error))
    out = out or Path("runs") / f"{spec.name}-seed{seed}"
    backend: Backend = (LocalBackend() if workers is None and scheduler is None
                        else DaskBackend(workers=workers, scheduler=scheduler))
    console.print(f"[bold]{escape(spec.title)}[/] - {patients} virtual patients, seed {seed}")
    try:
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("simulating", total=patients)
            outcome = run_trial(spec, patients, out, seed, parameters=_parameter_set(parameters), backend=backend,
                                chunk_size=chunk_size, trajectory_patients=trajectories, resume=resume,
                                progress=lambda done: bar.advance(task, done))
    except (RunSettingsError, ConnectionError, ImportError) as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"{out}: cannot write ({error.strerror or error})")
    _print_summary(outcome.summary())
    rate = outcome.manifest["timings_s"]["patients_per_s"]  # type: ignore[index]
    console.print(f"{rate:.0f} patients/s; results in {out}" if outcome.computed_chunks
                  else f"nothing left to compute; results in {out}")
    if not no_report:
        from .report import write_report

        console.print(f"report: {write_report(out, outcome.statistics)}")
    console.print(f"[dim]{NOTICE}[/]")


def _print_summary(summary) -> None:  # noqa: ANN001 (pandas DataFrame)
    for arm, group in summary.groupby("arm", sort=False):
        table = Table(title=f"arm: {escape(str(arm))}", show_lines=False)
        table.add_column("endpoint")
        table.add_column("value", justify="right")
        table.add_column("n", justify="right")
        for row in group.itertuples():
            value = f"{row.value:.0f}" if row.endpoint in ("patients", "failed_simulations") else f"{row.value:.1%}"
            table.add_row(row.endpoint, value, str(row.n))
        console.print(table)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory written by `leukosim run`")) -> None:
    """Write RUN_DIR/report.html: statistics, figures, published targets and provenance in one file."""
    from .report import write_report

    try:
        path = write_report(run_dir)
    except (FileNotFoundError, ProtocolError) as error:
        _fail(str(error))
    console.print(f"report: {path}")
    console.print(f"[dim]{NOTICE}[/]")


@app.command()
def validate(
    json_out: Path = typer.Option(None, "--json", help="also write the comparison as JSON records"),
    patients: int = typer.Option(VALIDATION_PATIENTS, "--patients", "-n", min=10,
                                 help="virtual patients per protocol (at least)"),
    oversampling: float = typer.Option(COHORT_OVERSAMPLING, "--oversampling", min=0.0,
                                       help="simulate each protocol with at least this many times its largest "
                                            "published cohort (0: --patients for every protocol)"),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="random seed"),
    parameters: str = typer.Option(None, "--parameters", help=_PARAMETERS_HELP),
    html_out: Path = typer.Option(Path("validation.html"), "--html", help="HTML validation report"),
) -> None:
    """Run every bundled protocol with published targets; print simulated vs published and the hit fractions."""
    from .calibration.validate import failed_patients, hit_fractions, validation_records, validation_table
    from .report.html import render_validation_report

    values = _parameter_set(parameters)
    with console.status(f"simulating at least {patients} patients per protocol"):
        table = validation_table(values, patients, seed, oversampling=oversampling)
    cohorts = table.groupby("protocol", sort=False)["cohort"].first()
    sizes = f"{patients} patients per protocol" + "".join(
        f", {protocol} {cohort}" for protocol, cohort in cohorts.items() if cohort > patients)
    shown = Table(title=f"validation, parameter set {values.name}, {sizes}, seed {seed}")
    for column in ("protocol", "arm", "target", "published", "95% interval", "simulated", "MC 95% CI", "hit"):
        shown.add_column(column, overflow="fold")
    for row in table.itertuples():
        verdict = "-" if row.hit is None or row.hit is pd.NA else ("[green]hit[/]" if row.hit else "[red]miss[/]")
        verdict += "" if row.role == "calibration" else f" [dim]({row.role})[/]"
        shown.add_row(row.protocol, str(row.arm or ""), escape(row.target), f"{row.published:.3g}",
                      f"{row.reference_low:.3g}-{row.reference_high:.3g}", f"{row.simulated:.3g}",
                      f"{row.simulated_ci_low:.3g}-{row.simulated_ci_high:.3g}", verdict)
    console.print(shown)
    hits = hit_fractions(table)
    summary = Table(title="hit fraction (targets with a 95% interval)")
    for column in ("therapy class", "targets", "with interval", "hits", "hit fraction"):
        summary.add_column(column)
    for row in hits.itertuples():
        summary.add_row(row.therapy_class, str(row.targets), str(row.with_interval), str(row.hits),
                        f"{row.hit_fraction:.0%}")
    console.print(summary)
    failures = failed_patients(table)
    for protocol, failed in failures[failures > 0].items():
        console.print(f"[red]{protocol}: {failed} of {cohorts[protocol]} patients failed; its targets rest on the "
                      "others[/]")
    subtitle = (f"Parameter set {values.name}; {sizes} (at least {oversampling:g} times each published cohort); "
                f"seed {seed}.")
    html_out.write_text(render_validation_report(table, hits, subtitle), encoding="utf-8")
    console.print(f"validation report: {html_out}")
    if json_out is not None:
        json_out.write_text(json.dumps(validation_records(table), indent=1) + "\n")
        console.print(f"records: {json_out}")
    console.print(f"[dim]{NOTICE}[/]")


@app.command()
def calibrate(
    out: Path = typer.Option(..., "--out", "-o", help="parameter-set file to write (JSON)"),
    patients: int = typer.Option(CalibrationSettings.n_patients, "--patients", "-n", min=10,
                                 help="virtual patients per protocol and evaluation"),
    evaluations: int = typer.Option(CalibrationSettings.max_evaluations, "--evaluations", min=0,
                                    help="CMA-ES evaluation budget (0: no search after screening and descent)"),
    seed: int = typer.Option(CalibrationSettings.seed, "--seed", "-s", min=0, help="seed of the common virtual cohort"),
    start: str = typer.Option(CalibrationSettings.start, "--start",
                              help="parameter set the search starts from (a shipped name or a JSON file)"),
    rounds: int = typer.Option(CalibrationSettings.descent_rounds, "--descent-rounds", min=0,
                               help="rounds of screening descent before the search (each: screen, then keep the "
                                    "moves that lower the loss, best first)"),
    final_factor: float = typer.Option(CalibrationSettings.final_screen_factor, "--final-screen-factor", min=1.01,
                                       help="smallest screening factor: a descent round that keeps no move is "
                                            "followed by one at the square root of its factor, down to this"),
    oversampling: float = typer.Option(CalibrationSettings.cohort_oversampling, "--oversampling", min=0.0,
                                       help="simulate each protocol with at least this many times its largest "
                                            "published cohort (0: --patients for every protocol)"),
    step: float = typer.Option(CalibrationSettings.initial_step_decades, "--step", min=0.01, max=2.0,
                               help="initial CMA-ES step (log10 decades of every fitted parameter)"),
    huber_z: float = typer.Option(CalibrationSettings.huber_z, "--huber-z", min=0.5,
                                  help="residual (SDs) beyond which a target's loss grows linearly, not "
                                       "quadratically"),
    parameters: list[str] = typer.Option([], "--parameter", "-p",
                                         help="fit this calibratable parameter (repeatable; default: the ones "
                                              "screening finds sensitive)"),
    hold_start: bool = typer.Option(False, "--hold-start",
                                    help="with --parameter: keep every other parameter at its start value"),
    protocols: list[str] = typer.Option([], "--protocol",
                                        help="fit to this bundled protocol's targets only (repeatable; default: "
                                             "every protocol with calibration targets)"),
    initial: list[str] = typer.Option([], "--initial",
                                      help="NAME=VALUE: start the search at this value of a fitted parameter "
                                           "(repeatable; an initial estimate, as NONMEM's $THETA)"),
    prior_sds: list[str] = typer.Option([], "--prior-sd",
                                        help="NAME=DECADES: prior SD of a fitted parameter in log10 decades, in "
                                             f"place of {CalibrationSettings.prior_sd_decades:g} (repeatable; wider "
                                             "for a value no source measures, as NONMEM's $PRIOR)"),
    reproduce: str = typer.Option(None, "--reproduce",
                                  help="re-run with the settings recorded in this parameter-set file or shipped set"),
) -> None:
    """Fit the calibratable parameters jointly to every calibration protocol's targets."""
    from .calibration.fit import calibrate as run_calibration
    from .calibration.fit import SettingsError, check_settings, settings_from_file, write_parameter_set

    if reproduce is not None:
        try:
            settings = settings_from_file(reproduce)
        except (OSError, KeyError, TypeError, ValueError) as error:
            _fail(f"{reproduce}: no usable calibration settings ({error})")
    else:
        settings = CalibrationSettings(name=out.stem, n_patients=patients, max_evaluations=evaluations, seed=seed,
                                       start=start, descent_rounds=rounds, final_screen_factor=final_factor,
                                       cohort_oversampling=oversampling, huber_z=huber_z,
                                       initial_step_decades=step, protocols=tuple(protocols),
                                       parameters=tuple(parameters), hold_start=hold_start,
                                       initial=_named_numbers("--initial", "VALUE", initial),
                                       prior_sd=_named_numbers("--prior-sd", "DECADES", prior_sds))
    try:
        check_settings(settings)
    except SettingsError as error:
        if reproduce is not None:  # a recorded setting: name the file and the field
            _fail(f"{reproduce}: settings.{error.setting}: {error.message}")
        options = {"start": "--start", "protocols": "--protocol", "parameters": "--parameter",
                   "hold_start": "--hold-start", "initial": "--initial", "prior_sd": "--prior-sd"}
        _fail(f"{options[error.setting]}: {error.message}")
    with console.status("calibrating") as status:
        document = run_calibration(settings, progress=lambda message: status.update(escape(message)))
    write_parameter_set(document, out)
    fit = document["fit"]
    console.print(f"loss {fit['loss_literature']:.4g} -> {fit['loss_calibrated']:.4g}; hits {fit['hits_literature']}"
                  f" -> {fit['hits_calibrated']} of {fit['targets_with_interval']}; {fit['evaluations']} evaluations")
    console.print(f"parameter set: {out}")
    console.print(f"[dim]{NOTICE}[/]")


@app.command()
def protocols() -> None:
    """List the bundled protocols."""
    table = Table("name", "title")
    for name in bundled_protocols():
        table.add_row(name, load_protocol(name).title)
    console.print(table)


@app.command("fit-patient")
def fit_patient(
    data: Path = typer.Argument(..., help="one patient's observations, NONMEM format of `leukosim export nonmem`"),
    protocol: str = typer.Option(..., "--protocol", "-p", help="the protocol the patient was treated on (bundled "
                                                               "name or YAML file); the arm is the data's ARM"),
    out: Path = typer.Option(None, "--out", "-o", help="fit file (default: <DATA stem>.fit.json)"),
    parameters: str = typer.Option(None, "--parameters", help=_PARAMETERS_HELP),
) -> None:
    """Estimate one patient's individual parameters (MAP, population prior, Laplace posterior) from DATA."""
    from .twin import PatientDataError, fit_patient as fit, read_patient_data

    try:
        spec = load_protocol(protocol)
        result = fit(read_patient_data(data), spec, _parameter_set(parameters))
    except (ProtocolError, PatientDataError, ValueError) as error:
        _fail(str(error))
    out = out or data.with_suffix(".fit.json")
    try:
        out.write_text(result.to_json())
    except OSError as error:
        _fail(f"{out}: cannot write ({error.strerror or error})")
    table = Table("parameter", "unit", "typical", "MAP", "95% interval", "posterior/prior SD",
                  title=f"{data.name} on {spec.name} ({result.arm}): "
                        + ", ".join(f"{n} {kind}" for kind, n in result.observations.items()))
    for row in result.estimates():
        table.add_row(str(row["parameter"]), str(row["unit"]), f"{row['typical']:.4g}", f"{row['map']:.4g}",
                      f"{row['ci_low']:.4g} - {row['ci_high']:.4g}", f"{row['eta_sd'] / row['omega']:.2f}")
    console.print(table)
    if not (result.converged and result.hessian_positive_definite):
        console.print("[yellow]warning:[/] the optimiser did not converge or the Hessian is not positive definite")
    console.print(f"fit in {escape(str(out))}")
    console.print(f"[dim]{NOTICE}[/]")


@app.command()
def forecast(
    fit: Path = typer.Argument(..., help="a fit file written by `leukosim fit-patient`"),
    protocols: str = typer.Option(..., "--protocols", help="comma-separated alternatives: protocol (every arm) or "
                                                           "protocol:arm, e.g. eliana,aall1331:blinatumomab"),
    samples: int = typer.Option(DEFAULT_SAMPLES, "--samples", "-k", min=1,
                                help="posterior samples simulated per alternative"),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="random seed"),
    json_out: Path = typer.Option(None, "--json", help="also write the forecast as JSON"),
) -> None:
    """Simulate a fitted patient under alternative protocols: outcome probabilities with 95% Monte Carlo
    (Wilson) intervals."""
    from .twin import PatientFit, forecast as run_forecast

    try:
        fitted = PatientFit.from_json(fit)
        alternatives = []
        for item in filter(None, (part.strip() for part in protocols.split(","))):
            name, _, arm = item.partition(":")
            alternatives.append((load_protocol(name), arm or None))
        result = run_forecast(fitted, alternatives, samples, seed)
    except (ProtocolError, ValueError) as error:
        _fail(str(error))
    table = Table("protocol", "arm", "endpoint", "probability", "95% interval", "n",
                  title=f"forecast of {escape(fitted.data_file)}: {samples} samples, seed {seed}")
    for row in result.table.itertuples(index=False):
        table.add_row(row.protocol, row.arm, row.endpoint, f"{row.probability:.2f}",
                      f"{row.ci_low:.2f} - {row.ci_high:.2f}", str(row.n))
    console.print(table)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(result.to_document(fitted), indent=1) + "\n")
        except OSError as error:
            _fail(f"{json_out}: cannot write ({error.strerror or error})")
        console.print(f"forecast in {escape(str(json_out))}")
    console.print(f"[bold]{NOTICE}[/]")


@app.command()
def params(calibratable: bool = typer.Option(False, "--calibratable", help="only parameters calibration may move"),
           ) -> None:
    """Print the parameter registry: value, unit, variability, calibration flag and source."""
    values = default_parameters()
    table = Table(title=f"parameter set {values.name}")
    table.add_column("name", no_wrap=True, min_width=max(len(p.name) for p in PARAMETERS))
    for column in ("value", "unit", "IIV CV", "calibrate", "source"):
        table.add_column(column, overflow="fold")
    for parameter in PARAMETERS:
        if calibratable and not parameter.calibrate:
            continue
        table.add_row(parameter.name, f"{values[parameter.name]:.4g}", parameter.unit,
                      f"{parameter.iiv_cv:.0%}" if parameter.iiv_cv else "", "yes" if parameter.calibrate else "no",
                      parameter.source)
    console.print(table)


@app.command()
def schema(out: Path = typer.Option(None, "--out", "-o", help="write to a file instead of stdout")) -> None:
    """Export the protocol file schema (JSON Schema)."""
    text = json.dumps(protocol_json_schema(), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")


export_app = typer.Typer(no_args_is_help=True, help="Export a run or the model to other tools' formats.")
app.add_typer(export_app, name="export")


def _export(write, run_dir: Path, out: Path, **options: object) -> None:  # noqa: ANN001 (a write_* function)
    try:
        paths = write(run_dir, out, **options)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"{out}: cannot write ({error.strerror or error})")
    for path in paths:
        console.print(f"wrote {escape(str(path))}")
    console.print(f"[dim]{NOTICE}[/]")


@export_app.command("nonmem")
def export_nonmem(run_dir: Path = typer.Argument(..., help="a run directory written by `leukosim run`"),
                  out: Path = typer.Option(..., "--out", "-o", help="NM-TRAN data file to write (.csv)")) -> None:
    """NM-TRAN dataset of RUN_DIR (doses, MRD, CAR transgene, B cells, drug levels, covariates), with a pharmpy
    .datainfo sidecar and a data dictionary."""
    from .io.nonmem import write_nonmem

    _export(write_nonmem, run_dir, out)


@export_app.command("adam")
def export_adam(run_dir: Path = typer.Argument(..., help="a run directory written by `leukosim run`"),
                out: Path = typer.Option(..., "--out", "-o", help="ADTTE file to write (.csv or .parquet)"),
                add_one_day: bool = typer.Option(False, "--add-one-day", help="AVAL = ADY - STARTDY + 1 (admiral)"),
                ) -> None:
    """ADaM-style time-to-event dataset (ADTTE: EFS, OS, relapse) of RUN_DIR, with a data dictionary."""
    from .io.adam import write_adtte

    _export(write_adtte, run_dir, out, add_one_day=add_one_day)


@export_app.command("sbml")
def export_sbml(
    protocol: str = typer.Option(..., "--protocol", "-p", help="bundled protocol name or a YAML file"),
    patient: int = typer.Option(..., "--patient", "-k", help="virtual patient id, as numbered by `leukosim run`"),
    out: Path = typer.Option(..., "--out", "-o", help="SBML file to write"),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="seed of the run the patient belongs to"),
    arm: str = typer.Option(None, "--arm", help="arm (default: the first)"),
    phases: str = typer.Option(None, "--phases", help="comma-separated phases of the arm (default: the path of a "
                                                      "complete responder)"),
) -> None:
    """Deterministic model of one virtual patient on PROTOCOL as SBML Level 3 Version 2, doses as events (no
    stochastic layers, no toxicity management)."""
    from .interop.sbml import patient_sbml

    if patient < 0:
        _fail(f"--patient must be a virtual patient id >= 0, got {patient}")
    try:
        text = patient_sbml(load_protocol(protocol), patient, seed, arm, phases.split(",") if phases else None)
    except (ProtocolError, ValueError) as error:
        _fail(str(error))
    try:
        out.write_text(text)
    except OSError as error:
        _fail(f"{out}: cannot write ({error.strerror or error})")
    console.print(f"wrote {escape(str(out))}")
    console.print(f"[dim]{NOTICE}[/]")
