"""Simulated values of a protocol's published targets, with Monte Carlo confidence intervals, and whether the
published interval holds them.

The reference interval of a target is its published 95% CI; where none is published at the 95% level:

- a proportion: the Wilson 95% interval of ``value`` with the trial's ``n`` (binomial);
- a geometric mean or geometric-mean ratio with the published SD of the log values ``log_sd`` (e.g. the square
  root of a population model's omega^2) and ``n``: the lognormal interval exp(ln value +- t(n-1) log_sd / sqrt(n));
- a mean with the published SD ``sd`` and ``n``: the t interval value +- t(n-1) sd / sqrt(n);

and where none of these exists the target has no verdict (``hit`` is NA). The simulated interval is the Monte
Carlo 95% CI of the simulated estimate: Wilson for proportions, Kaplan-Meier log(-log) for survival and its
medians, t on the log scale for geometric means, Welch t on the log scale for geometric-mean ratios, t for
means, and the distribution-free binomial order-statistic interval for a sample median (CRS onset).
``calibrate`` (from the target) says whether calibration may fit to the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from scipy.stats import binom
from scipy.stats import t as student_t

from ..model.disease import CD19_POSITIVE
from ..protocol.schema import QUANTITY_ENDPOINTS, Condition, Group, Protocol, Target
from ..observe.assays import CAR_QPCR_LLOQ_COPIES_PER_UG
from .outcomes import RELAPSE_PHENOTYPES, car_copies_column, mrd_column, response_column
from .statistics import RESPONDER, analysed, wilson_interval

__all__ = ["compare_targets", "evaluate_target", "group_members", "target_label", "TARGET_COLUMNS"]

TARGET_COLUMNS = ("target", "arm", "endpoint", "published", "published_ci_low", "published_ci_high",
                  "reference_low", "reference_high", "reference_kind", "simulated", "simulated_ci_low",
                  "simulated_ci_high", "n_simulated",
                  "hit", "na_reason", "calibrate", "out_of_sample", "role", "definition", "source")
_CD19_NEGATIVE = tuple(name for name, positive in zip(RELAPSE_PHENOTYPES, CD19_POSITIVE) if not positive)
_FIRST_EVENT = {"first_event_relapse": "relapse", "first_event_death": "death",
                "first_event_no_response": "no_response"}
_CRS_AT_LEAST = {"crs_any_grade": ("crs", 1), "crs_grade_3_plus": ("crs", 3), "icans_any_grade": ("icans", 1),
                 "icans_grade_3_plus": ("icans", 3)}
_CRS_EXACTLY = {"crs_grade_3": ("crs", 3), "crs_grade_4": ("crs", 4)}
#: Share of patients given at least one dose of a toxicity-management drug (patient-table count column).
_TREATMENT_COUNT = {"tocilizumab": "tocilizumab_doses", "corticosteroids": "corticosteroid_courses"}
#: Patient-table column of each kinetics / exposure endpoint (geometric means, ratios and means of the patients
#: with a positive value: CAR-T infused, or given the drug).
_GEOMEAN = {"car_cmax_geomean": "car_cmax_copies_per_ug", "car_auc28_geomean": "car_auc0_28",
            "car_tmax_geomean": "car_tmax_days"}
_GMR = {"car_cmax_gmr_responders": "car_cmax_copies_per_ug", "car_auc28_gmr_responders": "car_auc0_28"}
_MEAN = {"blinatumomab_css_mean": "blinatumomab_css_max_ng_per_mL",
         "inotuzumab_cmax_mean": "inotuzumab_cmax_ng_per_mL"}


def target_label(target: Target) -> str:
    """A short readable name: endpoint, then arm, assessment, timepoint and subgroup where given."""
    parts = [target.endpoint if target.group is None else f"share {target.group}"]
    if target.assessment:
        parts.append(f"@{target.assessment}")
    if target.timepoint_days:
        parts.append(f"@{target.timepoint_days:g}d")
    if target.among:
        parts.append(f"among {target.among}")
    return " ".join(parts)


def _holds(condition: Condition, patients: pd.DataFrame) -> np.ndarray:
    """Whether each patient meets a condition on a named assessment (False where not assessed)."""
    mrd = patients[mrd_column(condition.assessment)].astype("Float64").to_numpy(float, na_value=np.nan)
    response = patients[response_column(condition.assessment)].astype("string")
    ok = np.isfinite(mrd)
    if condition.mrd_below is not None:
        ok &= mrd < condition.mrd_below
    if condition.mrd_at_least is not None:
        ok &= mrd >= condition.mrd_at_least
    labels = response.fillna("NE").to_numpy(str)
    for wanted, negate in ((condition.response, False), (condition.response_not, True)):
        if wanted is not None:
            match = np.isin(labels, RESPONDER) if wanted == "CR_or_CRi" else labels == wanted
            ok &= ~match if negate else match
    if condition.prior_hsct is not None:
        ok &= patients["prior_hsct"].to_numpy(bool) == condition.prior_hsct
    return ok


def group_members(protocol: Protocol, patients: pd.DataFrame, group: str) -> np.ndarray:
    """Boolean mask of the patients in a built-in or protocol-defined subgroup."""
    if group == "responders":
        return patients["best_response"].astype("string").isin(RESPONDER).fillna(False).to_numpy(bool)
    if group == "car_infused":
        return patients["car_infused"].astype("boolean").fillna(False).to_numpy(bool)
    if group == "relapsed":
        return patients["relapse"].astype("boolean").fillna(False).to_numpy(bool)
    if group == "with_crs":
        return patients["crs_max_grade"].astype("Int64").fillna(0).to_numpy(int) >= 1
    definition: Group = protocol.groups[group]
    members = np.ones(len(patients), dtype=bool)
    for name in definition.assessed:
        members &= patients[mrd_column(name)].notna().to_numpy(bool)
    for condition in definition.conditions:
        members &= _holds(condition, patients)
    for other in definition.excluding:
        members &= ~group_members(protocol, patients, other)
    if definition.late_relapse is not None:
        members &= patients["late_relapse"].to_numpy(bool) == definition.late_relapse
    return members


def _proportion(successes: np.ndarray) -> tuple[float, float, float, int]:
    n = int(successes.size)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    k = int(successes.sum())
    low, high = wilson_interval(k, n)
    return k / n, float(low), float(high), n


def _kaplan_meier(patients: pd.DataFrame, endpoint: str) -> KaplanMeierFitter | None:
    if patients.empty:
        return None
    durations = patients[f"{endpoint}_days"].astype("Float64").to_numpy(float, na_value=np.nan)
    events = patients[f"{endpoint}_event"].astype("boolean").fillna(False).to_numpy(bool)
    return KaplanMeierFitter(alpha=0.05).fit(durations, events)


def evaluate_target(target: Target, protocol: Protocol, patients: pd.DataFrame
                    ) -> tuple[float, float, float, int]:
    """Simulated value of ``target``, its Monte Carlo 95% CI and the number of patients it rests on.

    ``patients`` is a run's patient table; only patients of the target's arm with ``status == "ok"`` count."""
    rows = analysed(patients)
    if target.arm is not None:
        rows = rows[rows["arm"] == target.arm]
    if target.among is not None:
        rows = rows[group_members(protocol, rows, target.among)]
    endpoint = target.endpoint
    if endpoint == "cr":
        column = "best_response" if target.assessment is None else response_column(target.assessment)
        return _proportion((rows[column].astype("string") == "CR").fillna(False).to_numpy(bool))
    if endpoint in _GEOMEAN or endpoint in _GMR or endpoint in _MEAN or endpoint == "crs_onset_median":
        return _quantity(endpoint, rows)
    if endpoint == "car_persistence_geomean":
        copies = rows[car_copies_column(target.assessment)].astype("Float64").to_numpy(float, na_value=np.nan)
        cmax = rows["car_cmax_copies_per_ug"].astype("Float64").to_numpy(float, na_value=np.nan)
        quantifiable = np.isfinite(copies) & (copies >= CAR_QPCR_LLOQ_COPIES_PER_UG) & (cmax > 0.0)
        return _geometric_mean(copies[quantifiable] / cmax[quantifiable])
    if endpoint == "relapse" and target.timepoint_days is not None:
        days = rows["relapse_day"].astype("Float64").to_numpy(float, na_value=np.nan)
        return _proportion(rows["relapse"].astype("boolean").fillna(False).to_numpy(bool)
                           & (days <= target.timepoint_days))
    if endpoint == "cr_or_cri":
        column = "best_response" if target.assessment is None else response_column(target.assessment)
        return _proportion(rows[column].astype("string").isin(RESPONDER).fillna(False).to_numpy(bool))
    if endpoint == "mrd_negative":
        return _proportion(_mrd_negative(target, protocol, rows))
    if endpoint in ("hsct", "sos_vod", "relapse"):
        return _proportion(rows[endpoint].astype("boolean").fillna(False).to_numpy(bool))
    if endpoint in _CRS_AT_LEAST or endpoint in _CRS_EXACTLY:
        kind, grade = _CRS_AT_LEAST.get(endpoint) or _CRS_EXACTLY[endpoint]
        grades = rows[f"{kind}_max_grade"].astype("Int64").to_numpy(int, na_value=0)
        return _proportion(grades >= grade if endpoint in _CRS_AT_LEAST else grades == grade)
    if endpoint in _TREATMENT_COUNT:
        return _proportion(rows[_TREATMENT_COUNT[endpoint]].astype("Int64").fillna(0).to_numpy(int) > 0)
    if endpoint in _FIRST_EVENT:
        kinds = rows["efs_event_type"].astype("string").fillna("").to_numpy(str)
        return _proportion(kinds == _FIRST_EVENT[endpoint])
    if endpoint == "group_share":
        return _proportion(group_members(protocol, rows, target.group))
    if endpoint == "cd19_negative_relapse_fraction":
        relapsed = rows[rows["relapse"].astype("boolean").fillna(False).to_numpy(bool)]
        if target.timepoint_days is not None:
            relapsed = relapsed[relapsed["relapse_day"].astype("Float64").to_numpy(float) <= target.timepoint_days]
        return _proportion(relapsed["relapse_phenotype"].astype("string").isin(_CD19_NEGATIVE).to_numpy(bool))
    survival = endpoint.removeprefix("median_")
    kmf = _kaplan_meier(rows, survival)
    if kmf is None:
        return np.nan, np.nan, np.nan, 0
    if endpoint.startswith("median_"):
        low, high = median_survival_times(kmf.confidence_interval_).to_numpy(float)[0]
        return float(kmf.median_survival_time_), float(low), float(high), len(rows)
    estimate = float(kmf.survival_function_at_times(target.timepoint_days).iloc[0])
    bands = kmf.confidence_interval_survival_function_
    at = bands.index.searchsorted(target.timepoint_days, side="right") - 1
    low, high = bands.iloc[max(at, 0)].to_numpy(float)
    return estimate, float(low), float(high), len(rows)


def _positive(rows: pd.DataFrame, column: str) -> np.ndarray:
    values = rows[column].astype("Float64").to_numpy(float, na_value=np.nan)
    return values[np.isfinite(values) & (values > 0.0)]


def _t95(df: float) -> float:
    return float(student_t.ppf(0.975, df))


def _geometric_mean(values: np.ndarray) -> tuple[float, float, float, int]:
    """Geometric mean of positive ``values`` with its t interval on the log scale (NaN below 2 values)."""
    n = values.size
    if n < 2:
        return (float(values[0]) if n else np.nan), np.nan, np.nan, n
    logs = np.log(values)
    centre, half = logs.mean(), _t95(n - 1) * logs.std(ddof=1) / np.sqrt(n)
    return float(np.exp(centre)), float(np.exp(centre - half)), float(np.exp(centre + half)), n


def _quantity(endpoint: str, rows: pd.DataFrame) -> tuple[float, float, float, int]:
    """Geometric mean (t interval on the log scale), geometric-mean ratio of responders to non-responders (Welch
    t interval on the log scale), mean (t interval) or sample median (binomial order-statistic interval) of the
    patients with a positive value; NaN where fewer than 2 patients (per group) have one."""
    if endpoint in _GMR:
        values = rows[_GMR[endpoint]].astype("Float64").to_numpy(float, na_value=np.nan)
        responder = rows["best_response"].astype("string").isin(RESPONDER).fillna(False).to_numpy(bool)
        valid = np.isfinite(values) & (values > 0.0)
        logs = [np.log(values[valid & responder]), np.log(values[valid & ~responder])]
        n = int(valid.sum())
        if min(len(x) for x in logs) < 2:
            return np.nan, np.nan, np.nan, n
        difference = logs[0].mean() - logs[1].mean()
        parts = [x.var(ddof=1) / len(x) for x in logs]
        se = float(np.sqrt(sum(parts)))
        if se == 0.0:
            return float(np.exp(difference)), float(np.exp(difference)), float(np.exp(difference)), n
        df = sum(parts) ** 2 / sum(v**2 / (len(x) - 1) for v, x in zip(parts, logs))
        half = _t95(df) * se
        return float(np.exp(difference)), float(np.exp(difference - half)), float(np.exp(difference + half)), n
    if endpoint == "crs_onset_median":
        grades = rows["crs_max_grade"].astype("Int64").to_numpy(int, na_value=0)
        onset = rows["crs_onset_day"].astype("Float64").to_numpy(float, na_value=np.nan)
        days = np.sort(onset[(grades >= 1) & np.isfinite(onset)])
        n = days.size
        if n < 2:
            return np.nan, np.nan, np.nan, n
        j = max(int(binom.ppf(0.025, n, 0.5)), 1)  # 1-based rank of the lower bound
        return float(np.median(days)), float(days[j - 1]), float(days[n - j]), n
    column = _GEOMEAN.get(endpoint) or _MEAN[endpoint]
    values = _positive(rows, column)
    n = values.size
    if n < 2:
        return (float(values[0]) if n else np.nan), np.nan, np.nan, n
    if endpoint in _GEOMEAN:
        return _geometric_mean(values)
    centre, half = values.mean(), _t95(n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(centre), float(centre - half), float(centre + half), n


def _mrd_negative(target: Target, protocol: Protocol, rows: pd.DataFrame) -> np.ndarray:
    """MRD below the assessment's threshold at ``target.assessment``, or at any response assessment of the
    arm when none is named (a patient never assessed counts as not MRD-negative)."""
    assessments = {a.name: a.threshold for arm in protocol.arms if target.arm in (None, arm.name)
                   for phase in arm.phases for a in phase.assess}
    if target.assessment is not None:
        names = [target.assessment]
    else:
        names = protocol.endpoints.response.assessments or list(assessments)
    negative = np.zeros(len(rows), dtype=bool)
    for name in names:
        mrd = rows[mrd_column(name)].astype("Float64").to_numpy(float, na_value=np.nan)
        negative |= mrd < assessments[name]
    return negative


def _reference_interval(target: Target) -> tuple[float, float, str]:
    """The interval a simulated value must fall in: published 95% CI, else binomial Wilson 95% from n (a
    proportion), else the lognormal interval of a geometric mean from log_sd and n, or the t interval of a mean
    from sd and n (a quantity)."""
    if target.ci is not None and abs(target.ci_level - 0.95) < 1e-9:
        return target.ci[0], target.ci[1], "published 95% CI"
    if target.n is None:
        return np.nan, np.nan, "none"
    if target.endpoint not in QUANTITY_ENDPOINTS:
        low, high = wilson_interval(round(target.value * target.n), target.n)
        return float(low), float(high), f"binomial 95% CI from n={target.n}"
    if target.n < 2:
        return np.nan, np.nan, "none"
    if target.log_sd is not None:
        half = _t95(target.n - 1) * target.log_sd / np.sqrt(target.n)
        return (float(target.value * np.exp(-half)), float(target.value * np.exp(half)),
                f"lognormal 95% CI from log SD {target.log_sd:g} and n={target.n}")
    if target.sd is not None:
        half = _t95(target.n - 1) * target.sd / np.sqrt(target.n)
        return (float(target.value - half), float(target.value + half),
                f"t 95% CI from SD {target.sd:g} and n={target.n}")
    return np.nan, np.nan, "none"


def _na_reason(target: Target, simulated: float, n: int) -> str | None:
    """Why a simulated value is missing (None where it is not)."""
    if not np.isnan(simulated):
        return None
    where = f" among {target.among}" if target.among else ""
    if n == 0:
        return f"no evaluable patients{where}"
    if target.endpoint in _GMR:
        return "fewer than 2 patients with a value among responders or among non-responders"
    return f"fewer than 2 patients with a value{where}"


def compare_targets(protocol: Protocol, patients: pd.DataFrame) -> pd.DataFrame:
    """One row per target of ``protocol``: published value and interval, simulated value and Monte Carlo CI,
    ``hit`` (the simulated value inside the reference interval; NA where there is none), ``na_reason`` where
    the simulated value is missing, and ``calibrate``."""
    rows = []
    for target in protocol.targets:
        simulated, sim_low, sim_high, n = evaluate_target(target, protocol, patients)
        low, high, kind = _reference_interval(target)
        verdict = pd.NA if kind == "none" or np.isnan(simulated) else bool(low <= simulated <= high)
        reason = _na_reason(target, simulated, n)
        rows.append({"target": target_label(target), "arm": target.arm, "endpoint": target.endpoint,
                     "published": target.value,
                     "published_ci_low": target.ci[0] if target.ci else np.nan,
                     "published_ci_high": target.ci[1] if target.ci else np.nan,
                     "reference_low": low, "reference_high": high, "reference_kind": kind,
                     "simulated": simulated, "simulated_ci_low": sim_low, "simulated_ci_high": sim_high,
                     "n_simulated": n, "hit": verdict, "na_reason": reason, "calibrate": target.calibrate,
                     "out_of_sample": target.out_of_sample, "role": target.role, "definition": target.definition,
                     "source": target.source})
    table = pd.DataFrame(rows, columns=list(TARGET_COLUMNS))
    table["hit"] = table["hit"].astype("boolean")
    return table
