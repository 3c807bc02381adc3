"""What a trial reports: the main endpoints of each arm as one tidy table (:func:`arm_summary`) and every
statistics table of a run (:func:`trial_statistics`), both built from :mod:`leukosim.endpoints.statistics`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..protocol.schema import Protocol
from .outcomes import RELAPSE_PHENOTYPES
from .statistics import (
    DAYS_PER_MONTH, analysed, baseline_table, car_kinetics, cumulative_incidence_of_relapse, hazard_ratio,
    response_rates, survival_table, toxicity_table,
)
from .targets import compare_targets

__all__ = ["arm_summary", "trial_statistics", "statistics_columns", "LANDMARK_MONTHS", "STATISTICS_COLUMNS",
           "ASSESSMENT_COLUMN_PREFIXES"]

LANDMARK_MONTHS = (6, 12, 24, 36, 60)

#: The patient-table columns :func:`trial_statistics` (and the report's figures) read, besides the per-assessment
#: columns (:data:`ASSESSMENT_COLUMN_PREFIXES`): a run's summary reads only these from ``patients.parquet``
#: (:func:`leukosim.io.rundir.read_statistics_patients`), and :func:`trial_statistics` drops every other column
#: first, so a column missing here fails every statistics test instead of going unnoticed.
STATISTICS_COLUMNS = (
    "patient_id", "arm", "status", "randomized",
    # baseline (Table 1)
    "age_years", "sex", "height_cm", "weight_kg", "bsa_m2", "marrow_blasts_percent", "wbc_per_uL", "prior_hsct",
    "late_relapse",
    # response, toxicity, transplant, kinetics and exposure
    "best_response", "crs_max_grade", "crs_onset_day", "icans_max_grade", "tocilizumab_doses",
    "corticosteroid_courses", "sos_vod", "hsct", "car_infused",
    "car_cmax_copies_per_ug", "car_tmax_days", "car_auc0_28", "blinatumomab_css_max_ng_per_mL",
    "inotuzumab_cmax_ng_per_mL",
    # relapse and survival
    "relapse", "relapse_day", "relapse_phenotype", "efs_days", "efs_event", "efs_event_type", "os_days", "os_event",
)
#: MRD, response and CAR transgene at each assessment (``outcomes.mrd_column`` / ``outcomes.response_column`` /
#: ``outcomes.car_copies_column``).
ASSESSMENT_COLUMN_PREFIXES = ("mrd_", "response_", "car_copies_")


def statistics_columns(names: Sequence[str]) -> list[str]:
    """The columns among ``names`` (a patient table's, in its order) that the statistics read."""
    return [name for name in names if name in STATISTICS_COLUMNS or name.startswith(ASSESSMENT_COLUMN_PREFIXES)]


def _landmarks(protocol: Protocol) -> list[int]:
    """The landmark months (:data:`LANDMARK_MONTHS`) within the protocol's follow-up."""
    return [m for m in LANDMARK_MONTHS if m * DAYS_PER_MONTH <= protocol.follow_up_days + 1.0]


def arm_summary(protocol: Protocol, patients: pd.DataFrame) -> pd.DataFrame:
    """Response, MRD negativity per assessment, EFS/OS landmarks within follow-up, toxicity, transplant and
    relapse phenotype of each arm, among the randomised patients whose simulation succeeded (``status == 'ok'``;
    see :func:`~leukosim.endpoints.statistics.analysed`)."""
    if analysed(patients).empty:
        return _main_table(protocol, patients, None, {})
    landmarks = _landmarks(protocol)
    survival = {endpoint: survival_table(patients, endpoint, landmarks) for endpoint in ("efs", "os")}
    return _main_table(protocol, patients, response_rates(patients, protocol), survival)


def _main_table(protocol: Protocol, patients: pd.DataFrame, rates: pd.DataFrame | None,
                survival: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`arm_summary` from the response and survival tables already computed (None / empty when no
    patient was analysed)."""
    rows: list[dict[str, object]] = []
    ok = analysed(patients)
    for arm in protocol.arms:
        group = patients[patients["arm"] == arm.name]
        if group.empty:
            continue
        members = ok[ok["arm"] == arm.name]
        n = len(members)

        def add(endpoint: str, value: float, denominator: int = n) -> None:
            rows.append({"arm": arm.name, "endpoint": endpoint, "value": value, "n": denominator})

        add("patients", float(len(group)), len(group))
        add("failed_simulations", float((group["status"] != "ok").sum()), len(group))
        if arm.randomizes():
            add("randomized", float(group["randomized"].sum()), len(group))
        if n == 0:
            continue
        for row in rates[rates["arm"] == arm.name].itertuples():  # type: ignore[index]
            name = "response_cr_or_cri" if row.endpoint == "cr_or_cri" else f"mrd_negative_{row.assessment}"
            if row.n:
                add(name, float(row.rate), int(row.n))
        for endpoint, table in survival.items():
            landmark_rows = table[(table["arm"] == arm.name) & (table["statistic"] == "survival")]
            for row in landmark_rows.itertuples():
                add(f"{endpoint}_{int(row.months)}mo", float(row.estimate))
        add("crs_any", float((members["crs_max_grade"] >= 1).mean()))
        add("crs_grade_3_plus", float((members["crs_max_grade"] >= 3).mean()))
        add("icans_any", float((members["icans_max_grade"] >= 1).mean()))
        add("icans_grade_3_plus", float((members["icans_max_grade"] >= 3).mean()))
        add("sos_vod", float(members["sos_vod"].mean()))
        add("hsct", float(members["hsct"].mean()))
        add("relapse", float(members["relapse"].mean()))
        relapses = members["relapse_phenotype"].dropna()
        for phenotype in RELAPSE_PHENOTYPES:
            if len(relapses):
                add(f"relapse_share_{phenotype}", float((relapses == phenotype).mean()), len(relapses))
        add("death", float(members["os_event"].mean()))
    return pd.DataFrame(rows, columns=["arm", "endpoint", "value", "n"]).astype({"value": np.float64})


def trial_statistics(protocol: Protocol, patients: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every statistics table of a run, by name: ``main`` (:func:`arm_summary`), ``baseline``, ``response``,
    ``efs`` and ``os`` (Kaplan-Meier landmarks at 6, 12, 24, 36 and 60 months within follow-up, median, RMST),
    ``hazard_ratio_efs`` / ``hazard_ratio_os`` (arms against ``endpoints.reference_arm``, default the last arm;
    only with two or more analysed arms), ``relapse_incidence`` (Aalen-Johansen by phenotype at the landmarks),
    ``toxicity``, ``car_kinetics`` and ``targets`` (simulated vs published).

    Only the :func:`statistics_columns` of ``patients`` are read; text columns may be categoricals (as
    :func:`leukosim.io.rundir.read_statistics_patients` returns them): the tables are the same."""
    columns = statistics_columns(list(patients.columns))
    if columns != list(patients.columns):
        patients = patients[columns]
    ok = analysed(patients)
    if ok.empty:
        return {"main": arm_summary(protocol, patients), "baseline": baseline_table(patients)}
    landmarks = _landmarks(protocol)
    rates = response_rates(patients, protocol)
    survival = {endpoint: survival_table(patients, endpoint, landmarks) for endpoint in ("efs", "os")}
    tables = {"main": _main_table(protocol, patients, rates, survival), "baseline": baseline_table(patients),
              "response": rates, **survival}
    analysed_arms = list(dict.fromkeys(ok["arm"]))
    reference = protocol.endpoints.reference_arm or protocol.arms[-1].name
    if len(analysed_arms) >= 2 and reference in analysed_arms:
        for endpoint in ("efs", "os"):
            tables[f"hazard_ratio_{endpoint}"] = hazard_ratio(patients, endpoint, reference)
    tables["relapse_incidence"] = cumulative_incidence_of_relapse(patients, [m * DAYS_PER_MONTH for m in landmarks])
    tables["toxicity"] = toxicity_table(patients)
    tables["car_kinetics"] = car_kinetics(patients)
    tables["targets"] = compare_targets(protocol, patients)
    return tables
