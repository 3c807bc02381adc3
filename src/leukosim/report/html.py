"""The HTML report of a run: one self-contained file (figures embedded as base64 SVG images, styles inline,
no script and no network access) with the protocol summary, the cohort's baseline table, every statistics
table, the figures, the published targets beside the simulated values, the manifest and the research-use
notice."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..endpoints.summary import trial_statistics
from ..io.rundir import RunDirectory, read_run, write_atomically
from ..observe.assays import ASSAYS
from ..protocol.schema import CAR_T_PRODUCTS, Protocol
from . import figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["render_report", "write_report", "render_validation_report", "REPORT"]

REPORT = "report.html"
NOTICE = ("Research use only. leukosim is not a medical device; its output must never be used as advice for an "
          "individual patient.")
_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.notice { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em 1em; border-radius: 4px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
.hit { color: #1a7f37; font-weight: 600; } .miss { color: #c62828; font-weight: 600; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""


def _svg(figure: Figure) -> str:
    """The figure as an ``<img>`` holding a base64 SVG (text drawn as paths, so no font is needed)."""
    import matplotlib
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # no date and a fixed id salt (SVG element ids are random otherwise): the same run gives the same file
    with matplotlib.rc_context({"svg.hashsalt": "leukosim"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="">'


def _figure_block(figure: Figure | None, caption: str) -> str:
    if figure is None:
        return ""
    return f"<figure>{_svg(figure)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _cell(value: object) -> str:
    """One table cell: 3 significant digits, missing as an en dash, infinity as "not reached"."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "not reached" if np.isinf(value) else f"{value:.3g}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table."""
    if frame.empty:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.astype(object).itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _protocol_section(protocol: Protocol) -> str:
    parts = [f"<p>{html.escape(protocol.description)}</p>" if protocol.description else ""]
    for arm in protocol.arms:
        rows = []
        for phase in arm.phases:
            drugs = ", ".join([d.drug + (f" {d.dose:g} {d.unit}" if d.dose else "") for d in phase.drugs]
                              + [p.procedure for p in phase.procedures])
            assess = ", ".join(f"{a.name} (day {a.day}, {a.assay})" for a in phase.assess)
            rows.append({"phase": phase.name, "days": phase.days, "therapy": drugs, "assessments": assess})
        parts.append(f"<h3>Arm {html.escape(arm.name)} (allocation {arm.allocation:g})</h3>")
        parts.append(_table(pd.DataFrame(rows)))
    endpoints = protocol.endpoints
    parts.append("<p>EFS from " + html.escape(endpoints.efs.origin) + "; events: "
                 + html.escape(", ".join(endpoints.efs.events)) + ". OS from " + html.escape(endpoints.os.origin)
                 + f". Follow-up {protocol.follow_up_days} days after the last protocol phase.</p>")
    if protocol.references:
        parts.append("<p>References: " + "; ".join(html.escape(r) for r in protocol.references) + "</p>")
    return "\n".join(parts)


def _baseline(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with one column per arm: median [IQR] or n (%)."""
    def text(row: pd.Series) -> str:
        if pd.notna(row["median"]):
            return f"{row['median']:.3g} [{row['q1']:.3g}-{row['q3']:.3g}]"
        return f"{int(row['count'])} ({row['percent']:.0f}%)"

    shown = table.assign(value=table.apply(text, axis=1))
    wide = shown.pivot(index="characteristic", columns="arm", values="value")
    wide = wide.reindex(index=list(dict.fromkeys(table["characteristic"])),
                        columns=list(dict.fromkeys(table["arm"])))
    counts = table.groupby("arm", sort=False)["n"].first()
    wide.columns = [f"{arm} (n={counts[arm]})" for arm in wide.columns]
    return wide.reset_index()


def _targets_table(targets: pd.DataFrame) -> str:
    shown = targets[["arm", "target", "published", "reference_kind", "reference_low", "reference_high", "simulated",
                     "simulated_ci_low", "simulated_ci_high", "n_simulated", "hit", "source", "role"]].copy()
    shown["hit"] = [("hit" if h else "miss") if pd.notna(h) else "no interval" for h in shown["hit"]]
    text = _table(shown)
    return text.replace("<td>hit</td>", '<td class="hit">hit</td>').replace("<td>miss</td>",
                                                                          '<td class="miss">miss</td>')


def _infusion_days(events: pd.DataFrame) -> pd.Series:
    """CAR-T infusion day (days since enrollment) per patient id."""
    doses = events[(events["event"] == "dose") & events["detail"].isin(CAR_T_PRODUCTS)]
    return doses.groupby("patient_id")["day"].min()


def render_report(run: RunDirectory, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """The report of a run directory as one HTML document; ``tables`` are its statistics tables
    (:func:`~leukosim.endpoints.summary.trial_statistics` of ``run.patients``), computed here if not given."""
    protocol, patients = run.protocol, run.patients
    if tables is None:
        tables = trial_statistics(protocol, patients)
    assays = [a for arm in protocol.arms for phase in arm.phases for a in phase.assess]
    detection_limit = min((ASSAYS[a.assay].limit_of_detection for a in assays), default=1e-4)
    empty = pd.DataFrame()
    sections: list[tuple[str, str]] = [
        ("Protocol", _protocol_section(protocol)),
        ("Cohort (Table 1)", _table(_baseline(tables["baseline"]))),
        ("Main endpoints", _table(tables["main"].pivot_table(index="endpoint", columns="arm", values="value",
                                                              sort=False).reset_index())),
    ]
    if "response" in tables:
        survival = [_figure_block(figures.kaplan_meier_figure(patients, e, f"{e.upper()} by arm"),
                                  f"Kaplan-Meier {e.upper()} with 95% confidence bands and numbers at risk.")
                    for e in ("efs", "os")]
        hazard = "".join(f"<h3>Hazard ratio, {e.upper()}</h3>" + _table(tables[f"hazard_ratio_{e}"])
                         for e in ("efs", "os") if f"hazard_ratio_{e}" in tables)
        sections += [
            ("Response and MRD", _table(tables["response"]) + _figure_block(
                figures.mrd_figure(run.trajectories, tables["response"], detection_limit),
                f"Left: true leukemic fraction of marrow in the {run.trajectories['patient_id'].nunique()} "
                "recorded patients while on study (a patient's curve ends at relapse or death, so late medians "
                "describe the survivors in remission). Right: assay-measured MRD negativity with Wilson 95% CIs.")),
            ("Event-free and overall survival",
             "".join(survival) + "<h3>Landmarks, median and RMST (EFS)</h3>" + _table(tables["efs"])
             + "<h3>Landmarks, median and RMST (OS)</h3>" + _table(tables["os"]) + hazard),
            ("Relapse", _table(tables["relapse_incidence"])
             + "<p>Cumulative incidence of relapse (Aalen-Johansen), death without relapse as competing risk, "
               "by relapse antigen phenotype.</p>"),
            ("Toxicity", _figure_block(figures.toxicity_figure(tables["toxicity"]),
                                       "Maximum CRS and ICANS grade (ASTCT 2019 consensus grading).")
             + _table(tables["toxicity"])),
            ("CAR-T kinetics", _figure_block(
                figures.car_kinetics_figure(run.trajectories, _infusion_days(run.events), tables["car_kinetics"]),
                "Median and 10-90th percentile band of the recorded infused patients.")
             + _table(tables["car_kinetics"])),
            ("Drug concentrations", _figure_block(figures.drug_concentration_figure(run.trajectories),
                                                  "Median and 10-90th percentile band, recorded patients.")),
            ("Patient courses", _figure_block(figures.swimmer_figure(protocol, patients, run.events),
                                              "Therapy phases (grey: follow-up), responses, transplant, relapse "
                                              "and death.")),
            ("Published targets", _figure_block(figures.targets_forest_figure(tables["targets"], protocol),
                                                "Grey: published 95% interval (or binomial 95% CI from n). "
                                                "Dots: simulated value with its Monte Carlo 95% CI.")
             + _targets_table(tables.get("targets", empty))),
        ]
    sections.append(("Manifest", f"<pre>{html.escape(json.dumps(run.manifest, indent=2, default=str))}</pre>"))
    return _page(protocol.title, f"Virtual trial, {len(patients)} patients, seed {run.manifest.get('seed')}, "
                 f"parameter set {run.manifest.get('parameter_set')}.", sections)


def _event_patients(patients: pd.DataFrame, trajectories: pd.DataFrame) -> np.ndarray:
    """The patients whose events the report uses: the swimmer plot's and the recorded ones (CAR-T infusion day)."""
    return np.union1d(figures.swimmer_patients(patients)["patient_id"].to_numpy(),
                      trajectories["patient_id"].unique())


def write_report(run_dir: str | Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write ``report.html`` into a completed run directory and return its path. Reads only what the report
    shows: the statistics columns of the patient table and the events of the swimmer plot's and the recorded
    patients (the same page as :func:`render_report` of the whole :func:`~leukosim.io.rundir.read_run`).
    ``tables``: the run's statistics tables if already computed (:attr:`leukosim.runner.RunOutcome.statistics`)."""
    run = read_run(run_dir, statistics_only=True, event_patients=_event_patients)
    path = run.path / REPORT
    write_atomically(path, render_report(run, tables))
    return path


def _page(title: str, subtitle: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<section><h2>{html.escape(heading)}</h2>\n{content}</section>"
                     for heading, content in sections if content)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(subtitle)}</p>\n"
            f'<p class="notice"><strong>{html.escape(NOTICE)}</strong></p>\n{body}\n'
            f'<p class="notice">{html.escape(NOTICE)}</p>\n</body></html>\n')


def render_validation_report(table: pd.DataFrame, hits: pd.DataFrame, subtitle: str) -> str:
    """The validation report: hit fractions per therapy class, then per protocol the forest plot and the
    target table (``table`` from :func:`leukosim.calibration.validate.validation_table`)."""
    sections = [("Hit fraction by therapy class", _table(hits))]
    for protocol, rows in table.groupby("protocol", sort=False):
        sections.append((f"{protocol}", _figure_block(figures.targets_forest_figure(rows), f"{protocol}: grey, "
                                                      "published 95% interval; dots, simulated with Monte Carlo "
                                                      "95% CI (green inside, red outside).")
                         + _targets_table(rows)))
    return _page("leukosim validation against published trials", subtitle, sections)
