"""Simulated values of a protocol's published targets, with Monte Carlo confidence intervals, and whether the
published interval holds them.

The reference interval of a target is its published 95% CI; where none is published at the 95% level, the
Wilson 95% interval of ``value`` with the trial's ``n`` (binomial), and where neither exists the target has no
verdict (``hit`` is NA). The simulated interval is the Monte Carlo 95% CI of the simulated estimate (Wilson for
proportions, Kaplan-Meier log(-log) for survival and medians)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times

from ..model.disease import CD19_POSITIVE
from ..protocol.schema import Condition, Group, Protocol, Target
from .outcomes import RELAPSE_PHENOTYPES, mrd_column, response_column
from .statistics import RESPONDER, wilson_interval

__all__ = ["compare_targets", "evaluate_target", "group_members", "target_label", "TARGET_COLUMNS"]

TARGET_COLUMNS = ("target", "arm", "endpoint", "published", "published_ci_low", "published_ci_high",
                  "reference_low", "reference_high", "reference_kind", "simulated", "simulated_ci_low",
                  "simulated_ci_high", "n_simulated",
                  "hit", "definition", "source")
_CD19_NEGATIVE = tuple(name for name, positive in zip(RELAPSE_PHENOTYPES, CD19_POSITIVE) if not positive)
_FIRST_EVENT = {"first_event_relapse": "relapse", "first_event_death": "death",
                "first_event_no_response": "no_response"}
_CRS_AT_LEAST = {"crs_any_grade": ("crs", 1), "crs_grade_3_plus": ("crs", 3), "icans_any_grade": ("icans", 1),
                 "icans_grade_3_plus": ("icans", 3)}
_CRS_EXACTLY = {"crs_grade_3": ("crs", 3), "crs_grade_4": ("crs", 4)}


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
    definition: Group = protocol.groups[group]
    members = np.ones(len(patients), dtype=bool)
    for name in definition.assessed:
        members &= patients[mrd_column(name)].notna().to_numpy(bool)
    for condition in definition.conditions:
        members &= _holds(condition, patients)
    for other in definition.excluding:
        members &= ~group_members(protocol, patients, other)
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
    rows = patients[patients["status"] == "ok"]
    if target.arm is not None:
        rows = rows[rows["arm"] == target.arm]
    if target.among is not None:
        rows = rows[group_members(protocol, rows, target.among)]
    endpoint = target.endpoint
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
    """The interval a simulated value must fall in: published 95% CI, else binomial Wilson 95% from n."""
    if target.ci is not None and abs(target.ci_level - 0.95) < 1e-9:
        return target.ci[0], target.ci[1], "published 95% CI"
    if target.n is not None and not target.endpoint.startswith("median"):
        low, high = wilson_interval(round(target.value * target.n), target.n)
        return float(low), float(high), f"binomial 95% CI from n={target.n}"
    return np.nan, np.nan, "none"


def compare_targets(protocol: Protocol, patients: pd.DataFrame) -> pd.DataFrame:
    """One row per target of ``protocol``: published value and interval, simulated value and Monte Carlo CI,
    and ``hit`` (the simulated value inside the reference interval; NA where there is none)."""
    rows = []
    for target in protocol.targets:
        simulated, sim_low, sim_high, n = evaluate_target(target, protocol, patients)
        low, high, kind = _reference_interval(target)
        verdict = pd.NA if kind == "none" or np.isnan(simulated) else bool(low <= simulated <= high)
        rows.append({"target": target_label(target), "arm": target.arm, "endpoint": target.endpoint,
                     "published": target.value,
                     "published_ci_low": target.ci[0] if target.ci else np.nan,
                     "published_ci_high": target.ci[1] if target.ci else np.nan,
                     "reference_low": low, "reference_high": high, "reference_kind": kind,
                     "simulated": simulated, "simulated_ci_low": sim_low, "simulated_ci_high": sim_high,
                     "n_simulated": n, "hit": verdict, "definition": target.definition, "source": target.source})
    table = pd.DataFrame(rows, columns=list(TARGET_COLUMNS))
    table["hit"] = table["hit"].astype("boolean")
    return table
