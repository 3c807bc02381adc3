"""Patient outcomes: one row per virtual patient (response, MRD, toxicity, transplant, relapse and its
phenotype, EFS and OS per the protocol's definitions) and one row per event."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..engine.simulate import ArmCourse, event_rows, origin_days
from ..model.disease import CLASS_NAMES
from ..model.layout import (
    C_APLASIA_DAYS, C_CAR_AUC28, C_CAR_CMAX, C_CAR_INFUSION, C_CAR_TMAX, C_CRS_MAX, C_CRS_ONSET, C_EVENT,
    C_EVENT_TIME, C_HSCT_TIME, C_ICANS_MAX, C_IL6_MAX, C_INO_CMAX, C_BLIN_CSS_MAX, C_INTERRUPTION_LOG,
    C_INTERRUPTIONS,
    C_RELAPSE_CLASS, C_SOS_TIME, C_STATUS, C_STEPS, C_STEROID_DOSES, C_TOCILIZUMAB_DOSES, EVENT_DEATH_CRS,
    EVENT_DEATH_INFECTION, EVENT_DEATH_SOS, EVENT_DEATH_TRM, EVENT_RELAPSE,
    MAX_LOGGED_INTERRUPTIONS, STATUS_NAMES,
)
from ..observe.grading import RESPONSE_LABELS
from ..protocol.schema import Protocol

__all__ = ["patient_table", "event_table", "car_copies_column", "mrd_column", "response_column",
           "RELAPSE_PHENOTYPES"]

RELAPSE_PHENOTYPES = ("CD19+", "CD19-", "CD22-low", "lineage-switch")
_DEATH_CAUSES = {EVENT_DEATH_INFECTION: "infection", EVENT_DEATH_TRM: "transplant", EVENT_DEATH_SOS: "sos_vod",
                 EVENT_DEATH_CRS: "crs"}
assert len(RELAPSE_PHENOTYPES) == len(CLASS_NAMES)


def _column_name(assessment: str) -> str:
    return assessment.replace("-", "_").replace(" ", "_").lower()


def mrd_column(assessment: str) -> str:
    """Name of the patient-table column holding the MRD result of an assessment."""
    return f"mrd_{_column_name(assessment)}"


def car_copies_column(assessment: str) -> str:
    """Name of the patient-table column holding the blood CAR transgene level (copies/ug gDNA) at an
    assessment (arms that give CAR-T only)."""
    return f"car_copies_{_column_name(assessment)}"


def response_column(assessment: str) -> str:
    """Name of the patient-table column holding the response category at an assessment."""
    return f"response_{_column_name(assessment)}"


def _first_event(days: list[NDArray[np.float64]], names: list[str], horizon: NDArray[np.float64]
                 ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.object_]]:
    """Earliest of several candidate event days (NaN = no such event) before the horizon."""
    stacked = np.stack([np.where(np.isfinite(d), d, np.inf) for d in days], axis=1)
    which = np.argmin(stacked, axis=1)
    first = stacked[np.arange(stacked.shape[0]), which]
    event = first <= horizon
    kinds = np.array(names, dtype=object)[which]
    return np.where(event, first, horizon), event, np.where(event, kinds, None)


def patient_table(protocol: Protocol, course: ArmCourse) -> pd.DataFrame:
    """One row per patient of an arm (days are counted from the protocol's EFS/OS origin)."""
    cov = course.covariates
    c = course.context
    n = len(cov)
    efs_def = protocol.endpoints.efs
    infusion = c[:, C_CAR_INFUSION]
    origin = origin_days(efs_def.origin, course)
    os_origin = origin_days(protocol.endpoints.os.origin, course)
    horizon = course.horizon_day
    event = c[:, C_EVENT].astype(int)
    event_time = c[:, C_EVENT_TIME]

    engine_death = np.isin(event, list(_DEATH_CAUSES))
    death_day = np.where(engine_death, event_time, course.death_after_progression_day)
    death_cause = np.where(engine_death, [_DEATH_CAUSES.get(e) for e in event], "leukemia")
    died = np.isfinite(death_day) & (death_day <= horizon)
    death_cause = np.where(died, death_cause, None)
    relapse_day = np.where(event == EVENT_RELAPSE, event_time, np.nan)
    hsct_day = np.where(c[:, C_HSCT_TIME] >= 0.0, c[:, C_HSCT_TIME], np.nan)

    candidates: list[NDArray[np.float64]] = []
    names: list[str] = []
    for kind in efs_def.events:
        if kind == "relapse":
            candidates.append(relapse_day)
        elif kind == "death":
            candidates.append(death_day)
        elif kind == "no_response":
            day = course.no_response_day
            candidates.append(np.where(np.isfinite(day), origin + 1.0, np.nan) if efs_def.no_response_time == "day_1"
                              else day)
        else:  # second malignancy is not modelled: never observed
            candidates.append(np.full(n, np.nan))
        names.append(kind)
    efs_end = horizon.copy()
    if efs_def.censor_at_hsct:
        efs_end = np.where(np.isfinite(hsct_day), np.minimum(hsct_day, horizon), horizon)
    efs_day, efs_event, efs_type = _first_event(candidates, names, efs_end)

    status = np.array(STATUS_NAMES, dtype=object)[c[:, C_STATUS].astype(int)]
    failed = status != "ok"

    responses = [a for a in course.assessments if not protocol.endpoints.response.assessments
                 or a in protocol.endpoints.response.assessments]
    best = np.full(n, -1)
    for name in responses:
        best = np.maximum(best, course.assessments[name].response)
    best_label = np.where(best >= 0, np.array(RESPONSE_LABELS, dtype=object)[np.maximum(best, 0)], "NE")

    relapse_phenotype = np.where(event == EVENT_RELAPSE,
                                 np.array(RELAPSE_PHENOTYPES, dtype=object)[c[:, C_RELAPSE_CLASS].astype(int)],
                                 None)
    car = infusion >= 0.0
    table = {
        "patient_id": cov.patient_id,
        "arm": np.full(n, course.arm, dtype=object),
        "status": status,
        "randomized": np.isfinite(course.randomization_day),
        "age_years": cov.age_years,
        "sex": np.where(cov.male, "M", "F"),
        "height_cm": cov.height_cm,
        "weight_kg": cov.weight_kg,
        "bsa_m2": cov.bsa_m2,
        "marrow_blasts_percent": cov.marrow_blasts_percent,
        "wbc_per_uL": cov.wbc_per_uL,
        "prior_hsct": cov.prior_hsct,
        "late_relapse": cov.late_relapse,
        "best_response": best_label,
        "crs_max_grade": c[:, C_CRS_MAX].astype(np.int64),
        "crs_onset_day": np.where(c[:, C_CRS_ONSET] >= 0.0, c[:, C_CRS_ONSET] - origin, np.nan),
        "icans_max_grade": c[:, C_ICANS_MAX].astype(np.int64),
        "tocilizumab_doses": c[:, C_TOCILIZUMAB_DOSES].astype(np.int64),
        "corticosteroid_courses": c[:, C_STEROID_DOSES].astype(np.int64),
        "blinatumomab_interruptions": c[:, C_INTERRUPTIONS].astype(np.int64),
        "il6_max_pg_per_mL": c[:, C_IL6_MAX],
        "sos_vod": c[:, C_SOS_TIME] >= 0.0,
        "sos_vod_day": np.where(c[:, C_SOS_TIME] >= 0.0, c[:, C_SOS_TIME] - origin, np.nan),
        "off_protocol_day": course.off_protocol_day - origin,
        "hsct": np.isfinite(hsct_day),
        "hsct_day": hsct_day - origin,
        "car_infused": car,
        "car_cmax_copies_per_ug": np.where(car, c[:, C_CAR_CMAX], np.nan),
        "car_tmax_days": np.where(car, c[:, C_CAR_TMAX] - infusion, np.nan),
        "car_auc0_28": np.where(car, c[:, C_CAR_AUC28], np.nan),
        "b_cell_aplasia_days": c[:, C_APLASIA_DAYS],
        "blinatumomab_css_max_ng_per_mL": c[:, C_BLIN_CSS_MAX],
        "inotuzumab_cmax_ng_per_mL": c[:, C_INO_CMAX],
        "relapse": event == EVENT_RELAPSE,
        "relapse_day": relapse_day - origin,
        "relapse_phenotype": relapse_phenotype,
        "efs_origin_day": origin,  # days since enrollment
        "os_origin_day": os_origin,
        "efs_days": efs_day - origin,
        "efs_event": efs_event,
        "efs_event_type": efs_type,
        "os_days": np.where(died, death_day, horizon) - os_origin,
        "os_event": died,
        "death_cause": death_cause,
        "solver_steps": c[:, C_STEPS].astype(np.int64),
    }
    arm = next(arm for arm in protocol.arms if arm.name == course.arm)
    for name in arm.assessment_names():  # every assessment of the arm, reached or not: a stable schema
        column = _column_name(name)
        result = course.assessments.get(name)
        if result is None:
            table[mrd_column(name)] = np.full(n, np.nan)
            table[f"blasts_percent_{column}"] = np.full(n, np.nan)
            table[response_column(name)] = np.full(n, None, dtype=object)
            if arm.gives_car_t():
                table[car_copies_column(name)] = np.full(n, np.nan)
            continue
        table[mrd_column(name)] = result.mrd
        table[f"blasts_percent_{column}"] = result.blasts_percent
        table[response_column(name)] = np.where(result.response >= 0,
                                               np.array(RESPONSE_LABELS, dtype=object)[np.maximum(result.response, 0)],
                                               None)
        if arm.gives_car_t():
            table[car_copies_column(name)] = result.car_copies
    frame = pd.DataFrame(table)
    # outcomes use nullable types, so a failed patient's outcomes are missing (NA) and the schema never
    # depends on whether a failure happened
    for column in frame.columns:
        if column in _BASELINE_COLUMNS:
            continue
        kind = frame[column].dtype.kind
        nullable = {"b": "boolean", "i": "Int64", "f": "Float64"}.get(kind, "string")
        frame[column] = frame[column].astype(nullable)
        frame.loc[failed, column] = pd.NA
    return frame


_BASELINE_COLUMNS = ("patient_id", "arm", "status", "age_years", "sex", "height_cm", "weight_kg", "bsa_m2",
                     "marrow_blasts_percent", "wbc_per_uL", "prior_hsct", "late_relapse",
                     "solver_steps")


def event_table(course: ArmCourse) -> pd.DataFrame:
    """One row per event of an arm: phase starts, doses, assessments, responses, relapses (value: share
    of the CD19+CD22+ class), transplant, toxicity, blinatumomab interruptions and deaths (days since
    enrollment). Doses: ``value`` in the administered unit (ug/day for blinatumomab, mg, cells, chemotherapy
    intensity) and ``duration`` the scheduled days of an infusion or block, cut at death or relapse (0 for a
    bolus); interruptions (the first ``MAX_LOGGED_INTERRUPTIONS``): ``duration`` the days the rule stops the
    infusion for."""
    c = course.context
    ids = course.covariates.patient_id
    rows = list(course.events)

    def add(mask: NDArray[np.bool_], day: NDArray[np.float64], event: str, detail: str = "",
            value: NDArray[np.float64] | float = np.nan, duration: NDArray[np.float64] | float = np.nan) -> None:
        if mask.any():
            rows.append(event_rows(ids[mask], day[mask], event, detail,
                                   value[mask] if isinstance(value, np.ndarray) else value,
                                   duration[mask] if isinstance(duration, np.ndarray) else duration))

    add(c[:, C_HSCT_TIME] >= 0.0, c[:, C_HSCT_TIME], "hsct")
    for k in range(MAX_LOGGED_INTERRUPTIONS):  # duration: planned days of the interruption
        start, end = c[:, C_INTERRUPTION_LOG + 2 * k], c[:, C_INTERRUPTION_LOG + 2 * k + 1]
        add(c[:, C_INTERRUPTIONS] > k, start, "interruption", "blinatumomab", duration=end - start)
    add(c[:, C_CRS_ONSET] >= 0.0, c[:, C_CRS_ONSET], "crs", "max_grade", c[:, C_CRS_MAX])
    add(c[:, C_SOS_TIME] >= 0.0, c[:, C_SOS_TIME], "sos_vod")
    for code, cause in _DEATH_CAUSES.items():
        add(c[:, C_EVENT].astype(int) == code, c[:, C_EVENT_TIME], "death", cause)
    late = course.death_after_progression_day
    add(np.isfinite(late) & (late <= course.horizon_day), late, "death", "leukemia")
    frame = pd.DataFrame({key: np.concatenate([row[key] for row in rows]) for key in EVENT_COLUMNS}
                         if rows else {key: [] for key in EVENT_COLUMNS})
    frame.insert(1, "arm", course.arm)
    return frame.sort_values(["patient_id", "day"], kind="stable").reset_index(drop=True)


EVENT_COLUMNS = ("patient_id", "day", "event", "detail", "value", "duration")
