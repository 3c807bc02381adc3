"""The report's figures. Each function takes a run's tables and returns a matplotlib Figure (or None when the
run has nothing to show, e.g. CAR-T kinetics of a chemotherapy trial). matplotlib is imported inside the
functions, so importing leukosim never needs it.

Days on the x axes are days since enrollment (trajectories, swimmer plot) or from the endpoint's origin
(Kaplan-Meier curves), as labelled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..endpoints.outcomes import RELAPSE_PHENOTYPES
from ..endpoints.statistics import DAYS_PER_MONTH, analysed
from ..observe.assays import B_CELL_APLASIA_PER_UL
from ..protocol.schema import Protocol

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["kaplan_meier_figure", "mrd_figure", "car_kinetics_figure", "drug_concentration_figure",
           "swimmer_figure", "swimmer_patients", "toxicity_figure", "targets_forest_figure", "SWIMMER_SAMPLE"]

SWIMMER_SAMPLE = 30  # patients in the swimmer plot
PHENOTYPE_COLOURS = dict(zip(RELAPSE_PHENOTYPES, ("#d62728", "#9467bd", "#ff7f0e", "#8c564b")))
_BAND = (10, 90)  # percentile band of trajectory plots
_MRD_FLOOR = 1e-7  # plotting floor of MRD (fraction of marrow cells) on the log axis
#: Times at which a Kaplan-Meier curve is drawn, evenly spaced up to the arm's last time: the estimate is exact
#: there and a step moves by at most one spacing (1/999 of the follow-up: 2 days in 5 years), where a million
#: patients' curve would otherwise have a vertex per distinct time (a 100 MB SVG per figure).
KM_CURVE_POINTS = 1000


def _figure(width: float = 7.0, height: float = 4.0, rows: int = 1, columns: int = 1, **kwargs: object):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False, **kwargs)
    return figure, axes


def kaplan_meier_figure(patients: pd.DataFrame, endpoint: str, title: str) -> Figure:
    """Kaplan-Meier curves of ``endpoint`` ("efs" or "os") per arm, 95% bands, numbers at risk under the axis
    (curves drawn at :data:`KM_CURVE_POINTS` times per arm, the numbers at risk counted from every patient)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    figure, axes = _figure(7.0, 4.6)
    ax = axes[0, 0]
    ok = analysed(patients)[["arm", f"{endpoint}_days", f"{endpoint}_event"]]  # no copy of the other columns
    fitters = []
    for arm, group in ok.groupby("arm", sort=False, observed=True):
        months = group[f"{endpoint}_days"].astype("Float64").to_numpy(float) / DAYS_PER_MONTH
        events = group[f"{endpoint}_event"].astype("boolean").fillna(False).to_numpy(bool)
        timeline = np.linspace(0.0, months.max(), KM_CURVE_POINTS)
        kmf = KaplanMeierFitter(label=str(arm)).fit(months, events, timeline=timeline)
        kmf.plot_survival_function(ax=ax, ci_show=True)
        fitters.append(kmf)
    ax.set_xlabel("months from origin")
    ax.set_ylabel(f"{endpoint.upper()} probability")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if fitters:
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    figure.tight_layout()
    return figure


def _bands(trajectories: pd.DataFrame, column: str, floor: float = 0.0) -> pd.DataFrame:
    """Median and percentile band of ``column`` per arm and day (values below ``floor`` raised to it)."""
    data = trajectories[["arm", "day", column]].dropna()
    data = data.assign(value=np.maximum(data[column].to_numpy(float), floor))
    grouped = data.groupby(["arm", "day"], sort=False)["value"]
    return pd.DataFrame({"median": grouped.median(), "low": grouped.quantile(_BAND[0] / 100),
                         "high": grouped.quantile(_BAND[1] / 100), "n": grouped.size()}).reset_index()


def _plot_bands(ax, bands: pd.DataFrame, label_suffix: str = "") -> None:  # noqa: ANN001 (matplotlib Axes)
    for arm, rows in bands.groupby("arm", sort=False):
        line, = ax.plot(rows["day"], rows["median"], label=f"{arm}{label_suffix}")
        ax.fill_between(rows["day"], rows["low"], rows["high"], color=line.get_color(), alpha=0.2, linewidth=0)


def mrd_figure(trajectories: pd.DataFrame, response: pd.DataFrame, detection_limit: float) -> Figure | None:
    """Left: true leukemic fraction of marrow over time (median and 10-90th percentile band, log scale, assay
    limit dashed). Right: MRD negativity at each assessment with Wilson 95% CIs."""
    if trajectories.empty and response.empty:
        return None
    figure, axes = _figure(11.0, 4.2, 1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0, 0]
    if not trajectories.empty:
        _plot_bands(ax, _bands(trajectories, "marrow_leukemic_fraction", _MRD_FLOOR))
        ax.axhline(detection_limit, color="k", linestyle="--", linewidth=1, label=f"assay limit {detection_limit:g}")
        ax.set_yscale("log")
        ax.set_ylim(_MRD_FLOOR / 2, 1.5)
        ax.set_xlabel("days since enrollment")
        ax.set_ylabel("leukemic fraction of marrow cells")
        ax.set_title(f"MRD over time (median, {_BAND[0]}-{_BAND[1]}th percentile)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    ax = axes[0, 1]
    mrd = response[(response["endpoint"] == "mrd_negative") & (response["n"] > 0)]
    if not mrd.empty:
        labels = [f"{row.arm}\n{row.assessment}" for row in mrd.itertuples()]
        x = np.arange(len(mrd))
        rate = mrd["rate"].to_numpy(float)
        ax.bar(x, rate, color="#1f77b4", alpha=0.8)
        ax.errorbar(x, rate, yerr=[rate - mrd["ci_low"].to_numpy(float), mrd["ci_high"].to_numpy(float) - rate],
                    fmt="none", ecolor="k", capsize=3)
        ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("MRD-negative fraction")
        ax.set_title("MRD negativity by assessment (95% CI)")
    else:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def _label_log_panel(ax, ylabel: str, title: str) -> None:  # noqa: ANN001 (matplotlib Axes)
    """Log y axis, days since infusion on x, legend and grid."""
    ax.set_yscale("log")
    ax.set_xlabel("days since CAR-T infusion")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def car_kinetics_figure(trajectories: pd.DataFrame, infusion_day: pd.Series, kinetics: pd.DataFrame
                        ) -> Figure | None:
    """CAR transgene copies/µg DNA (log) and B cells/µL since infusion: median and 10-90th percentile band;
    the median Tmax and geometric-mean Cmax are marked. ``infusion_day`` maps patient_id to the infusion day
    (days since enrollment)."""
    if infusion_day.empty or trajectories.empty:
        return None
    data = trajectories[trajectories["patient_id"].isin(infusion_day.index)].copy()
    if data.empty:
        return None
    data["day"] = data["day"] - data["patient_id"].map(infusion_day)
    data = data[(data["day"] >= 0) & (data["day"] <= 365)]
    figure, axes = _figure(11.0, 4.2, 1, 2)
    ax = axes[0, 0]
    _plot_bands(ax, _bands(data, "car_copies_per_ug", 1.0))
    for row in kinetics.itertuples():
        if row.parameter == "tmax" and np.isfinite(row.median):
            ax.axvline(row.median, color="grey", linestyle=":", label=f"median Tmax {row.median:.1f} d")
        if row.parameter == "cmax" and np.isfinite(row.geometric_mean):
            ax.axhline(row.geometric_mean, color="grey", linestyle="--",
                       label=f"geo-mean Cmax {row.geometric_mean:.3g}")
    _label_log_panel(ax, "transgene copies / µg DNA", "CAR-T expansion and persistence")
    ax = axes[0, 1]
    _plot_bands(ax, _bands(data, "b_cells_per_uL", 0.01))
    ax.axhline(B_CELL_APLASIA_PER_UL, color="k", linestyle="--", linewidth=1,
               label=f"aplasia threshold {B_CELL_APLASIA_PER_UL:g}/µL")
    _label_log_panel(ax, "B cells / µL blood", "B-cell aplasia and recovery")
    figure.tight_layout()
    return figure


_DRUGS = (("blinatumomab_ng_per_mL", "blinatumomab", "ng/mL"), ("inotuzumab_ng_per_mL", "inotuzumab", "ng/mL"))


def drug_concentration_figure(trajectories: pd.DataFrame) -> Figure | None:
    """Plasma concentration-time profiles of blinatumomab and inotuzumab (median and 10-90th percentile band)
    over the first 120 days, for the drugs the run gave."""
    early = trajectories[trajectories["day"] <= 120]
    given = [drug for drug in _DRUGS if drug[0] in early and (early[drug[0]].fillna(0.0) > 0).any()]
    if not given:
        return None
    figure, axes = _figure(5.5 * len(given), 4.0, 1, len(given))
    for ax, (column, name, unit) in zip(axes[0], given):
        _plot_bands(ax, _bands(early, column))
        ax.set_xlabel("days since enrollment")
        ax.set_ylabel(f"{name} ({unit})")
        ax.set_title(f"{name} concentration")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def swimmer_patients(patients: pd.DataFrame, sample: int = SWIMMER_SAMPLE) -> pd.DataFrame:
    """The rows of the patients the swimmer plot shows: the lowest ``sample`` patient ids, split evenly between
    arms (the report reads only their events)."""
    per_arm = max(1, sample // max(1, patients["arm"].nunique()))
    order = np.argsort(patients["patient_id"].to_numpy(), kind="stable")  # sorts ids, not a copy of the table
    keys = patients[["arm"]].iloc[order]
    return patients.loc[keys.groupby("arm", sort=False, observed=True).head(per_arm).index]


def swimmer_figure(protocol: Protocol, patients: pd.DataFrame, events: pd.DataFrame,
                   sample: int = SWIMMER_SAMPLE) -> Figure | None:
    """One lane per patient (the lowest ``sample`` patient ids, split evenly between arms): therapy phases as
    coloured bars, then follow-up in grey; response at assessments, transplant, relapse (coloured by phenotype) and
    death marked. Days since enrollment."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    chosen = swimmer_patients(patients, sample)
    if chosen.empty:
        return None
    chosen_ids = chosen["patient_id"].to_numpy()
    lanes = {pid: k for k, pid in enumerate(chosen_ids)}
    rows = events[events["patient_id"].isin(chosen_ids)]
    phases = rows[rows["event"] == "phase_start"]
    names = list(dict.fromkeys(phases["detail"]))
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    colours = {name: palette(k % 20) for k, name in enumerate(names)}
    length = {(arm.name, phase.name): float(phase.days) for arm in protocol.arms for phase in arm.phases}
    figure, axes = _figure(10.0, 0.28 * len(lanes) + 1.8)
    ax = axes[0, 0]
    ends = {pid: float(d) for pid, d in zip(chosen["patient_id"], chosen["os_days"].astype("Float64")
                                             .to_numpy(float, na_value=np.nan))}
    last_day = rows.groupby("patient_id")["day"].max()
    for pid, lane in lanes.items():
        own = phases[phases["patient_id"] == pid].sort_values("day")
        starts = own["day"].to_numpy(float)
        stop = max(float(last_day.get(pid, 0.0)), starts[-1] if starts.size else 0.0)
        if np.isfinite(ends.get(pid, np.nan)):
            stop = max(stop, ends[pid])
        bounds = np.append(starts[1:], stop)
        arm = chosen.loc[chosen["patient_id"] == pid, "arm"].iloc[0]
        for (start, end, name) in zip(starts, bounds, own["detail"]):
            planned = start + length[(arm, name)]
            ax.barh(lane, max(min(end, planned) - start, 1.0), left=start, height=0.6, color=colours[name],
                    linewidth=0)
            if end > planned:
                ax.barh(lane, end - planned, left=planned, height=0.25, color="lightgrey", linewidth=0)
    marks = {"hsct": ("D", "k", "HSCT"), "death": ("X", "k", "death")}
    for kind, (marker, colour, _) in marks.items():
        hit = rows[rows["event"] == kind]
        ax.scatter(hit["day"], hit["patient_id"].map(lanes), marker=marker, color=colour, s=30, zorder=3)
    responses = rows[(rows["event"] == "response") & (rows["value"] >= 1)]
    ax.scatter(responses["day"], responses["patient_id"].map(lanes), marker="o", facecolor="white",
               edgecolor="green", s=22, zorder=3)
    relapsed = chosen[chosen["relapse"].astype("boolean").fillna(False).to_numpy(bool)]
    enrollment_day = rows[rows["event"] == "relapse"].set_index("patient_id")["day"]
    for row in relapsed.itertuples():
        if row.patient_id in enrollment_day.index:
            ax.scatter(enrollment_day[row.patient_id], lanes[row.patient_id], marker="*", s=90, zorder=4,
                       color=PHENOTYPE_COLOURS.get(str(row.relapse_phenotype), "k"))
    ax.set_yticks(list(lanes.values()), [f"{pid} ({arm})" for pid, arm in zip(chosen_ids, chosen["arm"])],
                  fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("days since enrollment")
    ax.set_title(f"Swimmer plot: {len(lanes)} patients")
    handles = [mpatches.Patch(color=c, label=n) for n, c in colours.items()]
    handles += [mlines.Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="green",
                              label="CR/CRi at assessment")]
    handles += [mlines.Line2D([], [], marker=m, linestyle="", color=c, label=label) for m, c, label in marks.values()]
    handles += [mlines.Line2D([], [], marker="*", linestyle="", color=c, markersize=10, label=f"relapse {p}")
                for p, c in PHENOTYPE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure


def toxicity_figure(toxicity: pd.DataFrame) -> Figure:
    """Maximum CRS and ICANS grade distributions per arm (ASTCT 2019), grade 1-5 stacked."""
    figure, axes = _figure(10.0, 3.8, 1, 2)
    import matplotlib

    palette = matplotlib.colormaps["YlOrRd"]
    for ax, endpoint in zip(axes[0], ("crs", "icans")):
        rows = toxicity[(toxicity["endpoint"] == endpoint)]
        arms = list(dict.fromkeys(rows["arm"]))
        bottom = np.zeros(len(arms))
        for grade in range(1, 6):
            rate = np.array([float(rows[(rows["arm"] == a) & (rows["grade"] == grade)]["rate"].sum()) for a in arms])
            ax.bar(arms, rate, bottom=bottom, color=palette(0.2 + 0.16 * grade), label=f"grade {grade}")
            bottom += rate
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of patients")
        ax.set_title(f"{endpoint.upper()} maximum grade (ASTCT)")
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def targets_forest_figure(targets: pd.DataFrame, protocol: Protocol | None = None) -> Figure | None:
    """Forest plot: each target's reference interval (published 95% CI, or binomial from n) as a grey bar with
    the published value, and the simulated value with its Monte Carlo 95% CI (green: inside, red: outside).
    Medians (days) are drawn on their own panel."""
    if targets.empty:
        return None
    proportion = targets[~targets["endpoint"].str.startswith("median")]
    median = targets[targets["endpoint"].str.startswith("median")]
    panels = [(frame, label) for frame, label in ((proportion, "proportion"), (median, "days")) if not frame.empty]
    heights = [max(len(frame), 1) for frame, _ in panels]
    figure, axes = _figure(9.0, 0.32 * sum(heights) + 1.5, len(panels), 1,
                           gridspec_kw={"height_ratios": heights})
    for ax, (frame, unit) in zip(axes[:, 0], panels):
        y = np.arange(len(frame))
        ax.barh(y, (frame["reference_high"] - frame["reference_low"]).fillna(0.0), left=frame["reference_low"],
                height=0.5, color="lightgrey", label="published 95% interval")
        ax.scatter(frame["published"], y, marker="|", color="k", s=120, label="published")
        hit = frame["hit"].astype("boolean")
        colours = np.where(hit.fillna(False), "green", np.where(hit.isna(), "grey", "red"))
        simulated = frame["simulated"].to_numpy(float)
        finite = np.isfinite(simulated)
        low = np.clip(simulated - frame["simulated_ci_low"].to_numpy(float), 0, None)
        high = np.clip(frame["simulated_ci_high"].to_numpy(float) - simulated, 0, None)
        ax.errorbar(simulated[finite], y[finite] + 0.22, xerr=[low[finite], high[finite]], fmt="none",
                    ecolor="k", elinewidth=1, capsize=2)
        ax.scatter(simulated[finite], y[finite] + 0.22, c=colours[finite], s=25, zorder=3, label="simulated")
        labels = [f"{arm}: {name}" if isinstance(arm, str) else name
                  for arm, name in zip(frame["arm"], frame["target"])]
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        if unit == "proportion":
            ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3, axis="x")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    axes[0, 0].set_title("Simulated vs published targets" + (f" ({protocol.name})" if protocol else ""))
    figure.tight_layout()
    return figure
