"""The main endpoints of each arm, as a tidy table (arm, endpoint, value, n)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter

from ..protocol.schema import Protocol

__all__ = ["arm_summary", "LANDMARK_MONTHS"]

LANDMARK_MONTHS = (6, 12, 24, 36, 60)
DAYS_PER_MONTH = 365.25 / 12


def _km_at(days: pd.Series, events: pd.Series, months: float) -> float:
    fitter = KaplanMeierFitter().fit(days.to_numpy(float), events.to_numpy(bool))
    return float(fitter.survival_function_at_times(months * DAYS_PER_MONTH).iloc[0])


def arm_summary(protocol: Protocol, patients: pd.DataFrame) -> pd.DataFrame:
    """Response, MRD negativity per assessment, EFS/OS landmarks, toxicity, transplant and relapse phenotype
    of each arm, among patients whose simulation succeeded (``status == 'ok'``)."""
    rows: list[dict[str, object]] = []
    thresholds = {a.name: a.threshold for arm in protocol.arms for ph in arm.phases for a in ph.assess}
    for arm, group in patients.groupby("arm", sort=False):
        ok = group[group["status"] == "ok"]
        n = len(ok)

        def add(endpoint: str, value: float, denominator: int = n) -> None:
            rows.append({"arm": arm, "endpoint": endpoint, "value": value, "n": denominator})

        add("patients", float(len(group)), len(group))
        add("failed_simulations", float((group["status"] != "ok").sum()), len(group))
        if n == 0:
            continue
        add("response_cr_or_cri", float(ok["best_response"].isin(["CR", "CRi"]).mean()))
        for name, threshold in thresholds.items():
            column = "mrd_" + name.replace("-", "_").replace(" ", "_").lower()
            if column in ok:
                assessed = ok[column].dropna()
                if len(assessed):
                    add(f"mrd_negative_{name}", float((assessed < threshold).mean()), len(assessed))
        for endpoint in ("efs", "os"):
            for months in LANDMARK_MONTHS:
                if months * DAYS_PER_MONTH <= protocol.follow_up_days + 1.0:  # a landmark at the horizon counts
                    add(f"{endpoint}_{months}mo", _km_at(ok[f"{endpoint}_days"], ok[f"{endpoint}_event"], months))
        add("crs_any", float((ok["crs_max_grade"] >= 1).mean()))
        add("crs_grade_3_plus", float((ok["crs_max_grade"] >= 3).mean()))
        add("icans_any", float((ok["icans_max_grade"] >= 1).mean()))
        add("icans_grade_3_plus", float((ok["icans_max_grade"] >= 3).mean()))
        add("sos_vod", float(ok["sos_vod"].mean()))
        add("hsct", float(ok["hsct"].mean()))
        add("relapse", float(ok["relapse"].mean()))
        relapses = ok["relapse_phenotype"].dropna()
        for phenotype in ("CD19+", "CD19-", "CD22-low", "lineage-switch"):
            if len(relapses):
                add(f"relapse_share_{phenotype}", float((relapses == phenotype).mean()), len(relapses))
        add("death", float(ok["os_event"].mean()))
    return pd.DataFrame(rows, columns=["arm", "endpoint", "value", "n"]).astype({"value": np.float64})
