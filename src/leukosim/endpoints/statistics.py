"""Trial statistics on the per-patient table of a :class:`~leukosim.trial.TrialResult`.

Every function takes ``TrialResult.patients`` and returns a tidy :class:`pandas.DataFrame` (one row per arm and
quantity). Only patients whose simulation succeeded (``status == "ok"``) are analysed; failed simulations are
reported by :func:`leukosim.endpoints.summary.arm_summary`, not here.

Survival statistics are delegated to lifelines (Kaplan-Meier, Cox proportional hazards, Aalen-Johansen,
restricted mean survival time); this module only reshapes the data going in and the estimates coming out.
Times are in days; landmarks are given in months of 365.25 / 12 days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from lifelines import AalenJohansenFitter, CoxPHFitter, KaplanMeierFitter
from lifelines.utils import median_survival_times, restricted_mean_survival_time
from scipy import stats

from .outcomes import RELAPSE_PHENOTYPES, mrd_column

__all__ = [
    "wilson_interval",
    "response_rates",
    "survival_table",
    "hazard_ratio",
    "cumulative_incidence_of_relapse",
    "toxicity_table",
    "car_kinetics",
    "DAYS_PER_MONTH",
    "RELAPSE_PHENOTYPE_CODES",
    "analysed",
]

DAYS_PER_MONTH = 365.25 / 12
ENDPOINTS = ("efs", "os")
RESPONDER = ("CR", "CRi")
MAX_GRADE = 5
# Event codes handed to the Aalen-Johansen estimator: 0 censored, 1..4 relapse of that phenotype,
# DEATH_WITHOUT_RELAPSE the competing risk.
RELAPSE_PHENOTYPE_CODES = {name: code for code, name in enumerate(RELAPSE_PHENOTYPES, start=1)}
DEATH_WITHOUT_RELAPSE = 9
ANY_RELAPSE = 1


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2.0))


def wilson_interval(successes: float | Sequence[float] | np.ndarray, n: float | Sequence[float] | np.ndarray,
                    level: float = 0.95) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (vectorised over both arguments).

    ``low, high = (p + z²/2n ∓ z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the two-sided normal quantile
    of ``level``. Unlike the Wald interval it stays inside [0, 1] and is not degenerate at 0 or n successes.
    Where ``n == 0`` both bounds are NaN. Returns floats for scalar input, arrays otherwise.
    """
    z = _z(level)
    x = np.asarray(successes, dtype=float)
    total = np.asarray(n, dtype=float)
    if np.any(x < 0) or np.any(x > total):
        raise ValueError("successes must lie between 0 and n")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / total
        denominator = 1.0 + z**2 / total
        centre = (p + z**2 / (2.0 * total)) / denominator
        half_width = z * np.sqrt(p * (1.0 - p) / total + z**2 / (4.0 * total**2)) / denominator
    # exact at the ends: 0 successes give low 0 and n successes high 1 (the formula leaves ~1e-17 of rounding)
    low = np.where(total > 0, np.where(x == 0, 0.0, np.clip(centre - half_width, 0.0, 1.0)), np.nan)
    high = np.where(total > 0, np.where(x == total, 1.0, np.clip(centre + half_width, 0.0, 1.0)), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def analysed(patients: pd.DataFrame) -> pd.DataFrame:
    """The randomised patients whose simulation succeeded (``patients`` itself when that is all of them: no copy
    of a million rows). Patients are randomised at enrollment unless their arm randomises after a run-in; a
    table without the ``randomized`` column has all its patients randomised."""
    kept = (patients["status"] == "ok").to_numpy(bool)
    if "randomized" in patients:
        kept &= patients["randomized"].astype("boolean").to_numpy(bool, na_value=False)  # NA: a failed patient
    return patients if kept.all() else patients[kept]


def _proportion_row(successes: int, n: int, **keys: object) -> dict[str, object]:
    low, high = wilson_interval(successes, n)
    rate = successes / n if n > 0 else np.nan
    return {**keys, "n": n, "successes": successes, "rate": rate, "ci_low": low, "ci_high": high}


def response_rates(patients: pd.DataFrame, protocol: object) -> pd.DataFrame:
    """Response and MRD negativity of each arm, with Wilson 95% intervals.

    Rows: ``endpoint == "cr_or_cri"`` (best response CR or CRi among all analysed patients of the arm; NE counts as
    no response) and one ``endpoint == "mrd_negative"`` row per assessment of the arm's protocol (MRD strictly
    below that assessment's ``threshold``, among the patients assessed there, i.e. with a non-missing
    ``mrd_<assessment>``). Columns: arm, endpoint, assessment, threshold, n, successes, rate, ci_low, ci_high.
    Only patients with ``status == "ok"`` are analysed; ``rate`` is NaN only where ``n == 0``.
    """
    ok = analysed(patients)
    rows: list[dict[str, object]] = []
    for arm in protocol.arms:  # type: ignore[attr-defined]
        group = ok[ok["arm"] == arm.name]
        responders = int(group["best_response"].isin(RESPONDER).sum())
        rows.append(_proportion_row(responders, len(group), arm=arm.name, endpoint="cr_or_cri",
                                    assessment=pd.NA, threshold=np.nan))
        seen: set[str] = set()
        for phase in arm.phases:
            for assessment in phase.assess:
                column = mrd_column(assessment.name)
                if assessment.name in seen or column not in group:
                    continue
                seen.add(assessment.name)
                mrd = group[column].astype("Float64").dropna().to_numpy(float)
                rows.append(_proportion_row(int((mrd < assessment.threshold).sum()), len(mrd), arm=arm.name,
                                            endpoint="mrd_negative", assessment=assessment.name,
                                            threshold=float(assessment.threshold)))
    return pd.DataFrame(rows, columns=["arm", "endpoint", "assessment", "threshold", "n", "successes", "rate",
                                       "ci_low", "ci_high"])


def _survival_data(patients: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
    ok = analysed(patients)
    data = pd.DataFrame({
        "arm": ok["arm"].astype(str).to_numpy(),
        "duration": ok[f"{endpoint}_days"].astype("Float64").to_numpy(float, na_value=np.nan),
        "event": ok[f"{endpoint}_event"].astype("boolean").fillna(False).to_numpy(bool),
    })
    if data["duration"].isna().any():
        raise ValueError(f"{endpoint}_days is missing for some patients with status 'ok'")
    return data


def _step_lookup(frame: pd.DataFrame, times: Iterable[float]) -> pd.DataFrame:
    """Values of a right-continuous step function (indexed by time) at ``times``."""
    index = frame.index.to_numpy(float)
    positions = np.searchsorted(index, np.asarray(list(times), dtype=float), side="right") - 1
    return frame.iloc[np.clip(positions, 0, None)]


def _lower_upper(bands: pd.DataFrame) -> np.ndarray:
    """(lower, upper) columns of a lifelines confidence-band frame, as an (n, 2) array."""
    lower = [c for c in bands.columns if "_lower_" in str(c)]
    upper = [c for c in bands.columns if "_upper_" in str(c)]
    return bands[[lower[0], upper[0]]].to_numpy(float)


def _rmst_variance(kmf: KaplanMeierFitter, horizon: float) -> float:
    """Greenwood-type variance of the KM restricted mean up to ``horizon``.

    ``Var = sum_{t_i <= horizon} A_i**2 d_i / (n_i (n_i - d_i))`` with ``A_i`` the area under the KM curve between
    event time ``t_i`` and ``horizon`` (Klein & Moeschberger, 2nd ed., section 4.5). lifelines'
    ``restricted_mean_survival_time(return_variance=True)`` returns the variance of min(T, horizon) in the
    population, not of the estimator, hence this helper. Terms with ``n_i == d_i`` have ``A_i == 0`` and are dropped.
    """
    survival = kmf.survival_function_.iloc[:, 0]
    times = survival.index.to_numpy(float)
    keep = times <= horizon
    grid = np.append(times[keep], horizon)
    area_from = np.cumsum((np.diff(grid) * survival.to_numpy(float)[keep])[::-1])[::-1]  # area from grid[k] on
    table = kmf.event_table.loc[keep]
    deaths, at_risk = table["observed"].to_numpy(float), table["at_risk"].to_numpy(float)
    usable = (deaths > 0) & (at_risk > deaths)
    d, r = deaths[usable], at_risk[usable]
    return float(np.sum(area_from[usable] ** 2 * d / (r * (r - d))))


def survival_table(patients: pd.DataFrame, endpoint: str = "efs",
                   landmarks_months: Sequence[float] = (6, 12, 24, 36), horizon_days: float | None = None,
                   level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier summary of ``endpoint`` ("efs" or "os") per arm, in long form.

    Rows per arm (column ``statistic``):

    - ``"survival"`` at each landmark (``months``, ``days``): KM estimate and its log(-log) confidence interval
      (lifelines' ``KaplanMeierFitter``), with ``n_at_risk`` just before the landmark. Past the last follow-up
      lifelines carries the last value forward; ``n_at_risk == 0`` flags that.
    - ``"median"``: median time in days with its interval (``lifelines.utils.median_survival_times`` applied to the
      survival function and to its confidence bands); ``inf`` means not reached.
    - ``"rmst"``: restricted mean survival time in days up to ``horizon_days``
      (``lifelines.utils.restricted_mean_survival_time``; normal interval from the Greenwood-type variance of
      :func:`_rmst_variance`). The default horizon
      is the shortest of the arms' longest follow-up, so arms are compared over the same window.

    Columns: arm, statistic, months, days, estimate, ci_low, ci_high, n, events, n_at_risk.
    Only patients with ``status == "ok"`` are analysed.
    """
    data = _survival_data(patients, endpoint)
    alpha = 1.0 - level
    if horizon_days is None:
        horizon_days = float(data.groupby("arm", sort=False)["duration"].max().min())
    landmark_days = [m * DAYS_PER_MONTH for m in landmarks_months]
    rows: list[dict[str, object]] = []
    for arm, group in data.groupby("arm", sort=False):
        kmf = KaplanMeierFitter(alpha=alpha).fit(group["duration"], group["event"], label=str(arm))
        common = {"arm": arm, "n": len(group), "events": int(group["event"].sum())}
        survival = kmf.survival_function_at_times(landmark_days).to_numpy(float)
        bands = _lower_upper(_step_lookup(kmf.confidence_interval_survival_function_, landmark_days))
        durations = group["duration"].to_numpy(float)
        for months, days, estimate, (low, high) in zip(landmarks_months, landmark_days, survival, bands):
            rows.append({**common, "statistic": "survival", "months": float(months), "days": days,
                         "estimate": estimate, "ci_low": low, "ci_high": high,
                         "n_at_risk": int((durations >= days).sum())})
        median_ci = _lower_upper(median_survival_times(kmf.confidence_interval_))[0]
        rows.append({**common, "statistic": "median", "estimate": float(median_survival_times(kmf)),
                     "ci_low": median_ci[0], "ci_high": median_ci[1]})
        rmst = float(restricted_mean_survival_time(kmf, t=horizon_days))
        half_width = _z(level) * np.sqrt(_rmst_variance(kmf, horizon_days))
        rows.append({**common, "statistic": "rmst", "days": horizon_days, "months": horizon_days / DAYS_PER_MONTH,
                     "estimate": float(rmst), "ci_low": float(rmst - half_width),
                     "ci_high": float(rmst + half_width)})
    table = pd.DataFrame(rows, columns=["arm", "statistic", "months", "days", "estimate", "ci_low", "ci_high", "n",
                                        "events", "n_at_risk"])
    table["n_at_risk"] = table["n_at_risk"].astype("Int64")
    return table


def hazard_ratio(patients: pd.DataFrame, endpoint: str, reference_arm: str, level: float = 0.95) -> pd.DataFrame:
    """Hazard ratio of each arm against ``reference_arm`` for ``endpoint`` ("efs" or "os").

    One Cox proportional-hazards model (lifelines ``CoxPHFitter``, Efron ties) with an indicator per
    non-reference arm; the Wald p-value tests HR = 1. Columns: arm, reference_arm, hazard_ratio, ci_low, ci_high,
    p_value, n, events (n and events of the compared arm). Only patients with ``status == "ok"`` are analysed.
    """
    data = _survival_data(patients, endpoint)
    arms = list(dict.fromkeys(data["arm"]))
    if reference_arm not in arms:
        raise ValueError(f"reference arm {reference_arm!r} not among the analysed arms {arms}")
    others = [arm for arm in arms if arm != reference_arm]
    if not others:
        raise ValueError("a hazard ratio needs at least two arms")
    design = pd.DataFrame({"duration": data["duration"], "event": data["event"]})
    covariates = {arm: f"arm_{i}" for i, arm in enumerate(others)}
    for arm, name in covariates.items():
        design[name] = (data["arm"] == arm).astype(float)
    cph = CoxPHFitter(alpha=1.0 - level).fit(design, duration_col="duration", event_col="event")
    summary = cph.summary
    lower = [c for c in summary.columns if c.startswith("exp(coef) lower")][0]
    upper = [c for c in summary.columns if c.startswith("exp(coef) upper")][0]
    rows = []
    for arm, name in covariates.items():
        in_arm = data["arm"] == arm
        rows.append({"arm": arm, "reference_arm": reference_arm, "hazard_ratio": summary.loc[name, "exp(coef)"],
                     "ci_low": summary.loc[name, lower], "ci_high": summary.loc[name, upper],
                     "p_value": summary.loc[name, "p"], "n": int(in_arm.sum()),
                     "events": int(data.loc[in_arm, "event"].sum())})
    return pd.DataFrame(rows)


def _competing_risks_data(patients: pd.DataFrame) -> pd.DataFrame:
    """Time and event code per analysed patient: relapse (its phenotype code) at ``relapse_day``, otherwise death
    without relapse (DEATH_WITHOUT_RELAPSE) or censoring (0) at ``os_days``."""
    ok = analysed(patients)
    relapsed = ok["relapse"].astype("boolean").fillna(False).to_numpy(bool)
    died = ok["os_event"].astype("boolean").fillna(False).to_numpy(bool)
    phenotype = ok["relapse_phenotype"].astype("string").fillna("").to_numpy(object)
    unknown = set(phenotype[relapsed]) - set(RELAPSE_PHENOTYPE_CODES)
    if unknown:
        raise ValueError(f"unknown relapse phenotypes {sorted(unknown)}")
    code = np.where(relapsed, [RELAPSE_PHENOTYPE_CODES.get(p, 0) for p in phenotype],
                    np.where(died, DEATH_WITHOUT_RELAPSE, 0))
    time = np.where(relapsed, ok["relapse_day"].astype("Float64").to_numpy(float, na_value=np.nan),
                    ok["os_days"].astype("Float64").to_numpy(float, na_value=np.nan))
    if np.isnan(time).any():
        raise ValueError("relapse_day or os_days missing for some patients with status 'ok'")
    return pd.DataFrame({"arm": ok["arm"].astype(str).to_numpy(), "time": time, "code": code.astype(int)})


def _aalen_johansen(time: np.ndarray, code: np.ndarray, event_of_interest: int,
                    times_days: Sequence[float], level: float) -> tuple[np.ndarray, np.ndarray]:
    """CIF of ``event_of_interest`` at ``times_days`` and its (log-log) confidence bands, via lifelines.

    Tied times of different event types are jittered by lifelines (seed fixed, so results are reproducible).
    """
    fitter = AalenJohansenFitter(seed=0, alpha=1.0 - level)
    fitter.fit(time, code, event_of_interest=event_of_interest)
    cif = _step_lookup(fitter.cumulative_density_, times_days).to_numpy(float).ravel()
    # Sorted per row: lifelines 0.30 labels the AJ bands the wrong way round (its "lower" is the larger value).
    bands = np.sort(_lower_upper(_step_lookup(fitter.confidence_interval_, times_days)), axis=1)
    before_first = np.asarray(times_days, dtype=float) < fitter.cumulative_density_.index.min()
    cif[before_first] = 0.0
    return cif, bands


def cumulative_incidence_of_relapse(patients: pd.DataFrame, times_days: Sequence[float],
                                    level: float = 0.95) -> pd.DataFrame:
    """Cumulative incidence of relapse per arm (Aalen-Johansen, lifelines ``AalenJohansenFitter``).

    Death without relapse is the competing risk; patients alive without relapse are censored at ``os_days``
    (other EFS events, e.g. induction failure, are not relapses and do not stop follow-up). ``phenotype == "any"``
    is the incidence of relapse of any phenotype; one further row set per phenotype in
    :data:`RELAPSE_PHENOTYPE_CODES` treats relapses of the other phenotypes as competing events too, so the
    phenotype incidences add up to the overall one. The log(-log) interval is NaN where the incidence is 0.
    Columns: arm, phenotype, day, cumulative_incidence, ci_low, ci_high, n, events.
    Only patients with ``status == "ok"`` are analysed.
    """
    data = _competing_risks_data(patients)
    times_days = [float(t) for t in times_days]
    rows: list[dict[str, object]] = []
    for arm, group in data.groupby("arm", sort=False):
        time, code = group["time"].to_numpy(float), group["code"].to_numpy(int)
        is_relapse = np.isin(code, list(RELAPSE_PHENOTYPE_CODES.values()))
        overall = np.where(is_relapse, ANY_RELAPSE, code)
        analyses = [("any", overall, ANY_RELAPSE)] + [(p, code, c) for p, c in RELAPSE_PHENOTYPE_CODES.items()]
        for phenotype, codes, event in analyses:
            cif, bands = _aalen_johansen(time, codes, event, times_days, level)
            for day, estimate, (low, high) in zip(times_days, cif, bands):
                rows.append({"arm": arm, "phenotype": phenotype, "day": day, "cumulative_incidence": estimate,
                             "ci_low": low, "ci_high": high, "n": len(group), "events": int((codes == event).sum())})
    return pd.DataFrame(rows, columns=["arm", "phenotype", "day", "cumulative_incidence", "ci_low", "ci_high", "n",
                                       "events"])


def toxicity_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Toxicity and transplant rates per arm, with Wilson 95% intervals.

    Rows: ``endpoint`` "crs" and "icans" with ``grade`` 0-5 (proportion of patients whose maximum grade is exactly
    that grade, among patients with a recorded grade), "sos_vod" and "hsct" (proportion of patients, ``grade`` NA).
    Columns: arm, endpoint, grade, n, successes, rate, ci_low, ci_high.
    Only patients with ``status == "ok"`` are analysed.
    """
    ok = analysed(patients)
    rows: list[dict[str, object]] = []
    for arm, group in ok.groupby("arm", sort=False, observed=True):
        for endpoint in ("crs", "icans"):
            grades = group[f"{endpoint}_max_grade"].astype("Int64").dropna().to_numpy(int)
            for grade in range(MAX_GRADE + 1):
                rows.append(_proportion_row(int((grades == grade).sum()), len(grades), arm=arm, endpoint=endpoint,
                                            grade=grade))
        for endpoint in ("sos_vod", "hsct"):
            flags = group[endpoint].astype("boolean").dropna().to_numpy(bool)
            rows.append(_proportion_row(int(flags.sum()), len(flags), arm=arm, endpoint=endpoint, grade=pd.NA))
    table = pd.DataFrame(rows, columns=["arm", "endpoint", "grade", "n", "successes", "rate", "ci_low", "ci_high"])
    table["grade"] = table["grade"].astype("Int64")
    return table


def _geometric(values: np.ndarray) -> tuple[float, float]:
    """Geometric mean and geometric coefficient of variation sqrt(exp(sd_log²) - 1) of positive values."""
    logs = np.log(values)
    if len(logs) == 0:
        return np.nan, np.nan
    cv = float(np.sqrt(np.expm1(np.var(logs, ddof=1)))) if len(logs) > 1 else np.nan
    return float(np.exp(logs.mean())), cv


def _geometric_mean_ratio(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float]:
    """Ratio of geometric means a / b with a Welch t interval on the log scale."""
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan
    la, lb = np.log(a), np.log(b)
    ratio = float(np.exp(la.mean() - lb.mean()))
    if len(a) < 2 or len(b) < 2:
        return ratio, np.nan, np.nan
    va, vb = np.var(la, ddof=1) / len(a), np.var(lb, ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return ratio, ratio, ratio
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half_width = stats.t.ppf(0.5 + level / 2.0, dof) * se
    return ratio, float(ratio * np.exp(-half_width)), float(ratio * np.exp(half_width))


def car_kinetics(patients: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """CAR-T expansion per arm, among CAR-infused patients.

    Rows per arm and ``parameter``: "cmax" (copies/µg DNA) and "auc0_28" (copies/µg DNA·day) with geometric mean,
    geometric CV, median and the responder / non-responder geometric-mean ratio (responder: best response CR or
    CRi) with a Welch 95% interval on the log scale; "tmax" (days) with its median only. Non-positive or missing
    values are left out of the statistics of that parameter (``n`` counts the values used). Arms without infused
    patients have no rows. Columns: arm, parameter, n, geometric_mean, geometric_cv, median, n_responders,
    n_nonresponders, gmr_responder_vs_nonresponder, gmr_ci_low, gmr_ci_high.
    Only patients with ``status == "ok"`` are analysed.
    """
    ok = analysed(patients)
    if "car_infused" in ok:
        infused = ok[ok["car_infused"].astype("boolean").fillna(False).to_numpy(bool)]
    else:
        infused = ok[ok["car_cmax_copies_per_ug"].notna().to_numpy(bool)]
    columns = ["arm", "parameter", "n", "geometric_mean", "geometric_cv", "median", "n_responders",
               "n_nonresponders", "gmr_responder_vs_nonresponder", "gmr_ci_low", "gmr_ci_high"]
    rows: list[dict[str, object]] = []
    for arm, group in infused.groupby("arm", sort=False, observed=True):
        responder = group["best_response"].isin(RESPONDER).to_numpy(bool)
        for parameter, column in (("cmax", "car_cmax_copies_per_ug"), ("auc0_28", "car_auc0_28"),
                                  ("tmax", "car_tmax_days")):
            values = group[column].astype("Float64").to_numpy(float, na_value=np.nan)
            valid = np.isfinite(values) & (values > 0)
            row: dict[str, object] = {"arm": arm, "parameter": parameter, "n": int(valid.sum()),
                                      "median": float(np.median(values[valid])) if valid.any() else np.nan,
                                      "n_responders": int((valid & responder).sum()),
                                      "n_nonresponders": int((valid & ~responder).sum())}
            if parameter != "tmax":
                row["geometric_mean"], row["geometric_cv"] = _geometric(values[valid])
                (row["gmr_responder_vs_nonresponder"], row["gmr_ci_low"],
                 row["gmr_ci_high"]) = _geometric_mean_ratio(values[valid & responder], values[valid & ~responder],
                                                             level)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


_BASELINE_CONTINUOUS = (("age_years", "Age, years"), ("weight_kg", "Weight, kg"), ("height_cm", "Height, cm"),
                        ("bsa_m2", "Body surface area, m²"), ("marrow_blasts_percent", "Marrow blasts, %"),
                        ("wbc_per_uL", "WBC, /µL"))


def baseline_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Cohort baseline characteristics per arm ("Table 1"), all enrolled patients.

    Continuous covariates as median and interquartile range, sex, prior transplant and late first relapse as count
    and percentage.
    Columns: arm, characteristic, n, median, q1, q3, count, percent.
    """
    rows: list[dict[str, object]] = []
    for arm, group in patients.groupby("arm", sort=False, observed=True):
        n = len(group)
        for column, label in _BASELINE_CONTINUOUS:
            values = group[column].to_numpy(float)
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            rows.append({"arm": arm, "characteristic": label, "n": n, "median": median, "q1": q1, "q3": q3})
        for label, flags in (("Male sex", group["sex"].to_numpy(str) == "M"),
                             ("Prior allogeneic HSCT", group["prior_hsct"].to_numpy(bool)),
                             ("Late first relapse", group["late_relapse"].to_numpy(bool))):
            rows.append({"arm": arm, "characteristic": label, "n": n, "count": int(flags.sum()),
                         "percent": 100.0 * flags.mean()})
    return pd.DataFrame(rows, columns=["arm", "characteristic", "n", "median", "q1", "q3", "count", "percent"])
