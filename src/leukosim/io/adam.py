"""ADaM-style time-to-event dataset (ADTTE-like) of a run: one row per patient and parameter for event-free
survival (EFS), overall survival (OS) and relapse (REL), with the trial's own endpoint definitions.

Virtual trials have no calendar dates, so the date variables are study days: ``STARTDY`` is the analysis origin
(the protocol's EFS/OS origin) and ``ADY`` the event or censoring day, both in days since enrollment, and
``AVAL = ADY - STARTDY`` (days; the patient table's ``efs_days`` / ``os_days``). admiral's default adds one day
(``AVAL = ADT - STARTDT + 1``): pass ``add_one_day=True`` for that. ``CNSR`` follows CDISC: 0 event, 1 censored
at the end of follow-up (or at transplant when the protocol censors EFS there), 2 (REL only) death without
relapse, the competing event: treat it as censoring for a cause-specific analysis and as a competing event for
cumulative incidence (Aalen-Johansen / Fine-Gray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._export import analysed, write_dictionary
from .rundir import RunDirectory, read_run

__all__ = ["adtte", "write_adtte", "PARAMETERS", "COLUMNS"]

#: PARAMCD -> (PARAMN, PARAM).
PARAMETERS: dict[str, tuple[int, str]] = {
    "EFS": (1, "Event-Free Survival (days)"),
    "OS": (2, "Overall Survival (days)"),
    "REL": (3, "Time to Relapse (days), death without relapse competing"),
}
_EVENTS = {"no_response": "TREATMENT FAILURE (NO RESPONSE)", "relapse": "RELAPSE", "death": "DEATH",
           "second_malignancy": "SECOND MALIGNANCY"}
_END = "END OF FOLLOW-UP"

#: Column -> (description, unit).
COLUMNS: dict[str, tuple[str, str]] = {
    "STUDYID": ("protocol name (virtual study)", ""),
    "USUBJID": ("unique subject identifier: STUDYID-patient_id (6 digits)", ""),
    "SUBJID": ("leukosim patient_id", ""),
    "ARM": ("arm (planned = actual in a virtual trial)", ""),
    "TRT01P": ("planned treatment for period 01 (the arm)", ""),
    "TRT01PN": ("planned treatment number: arm number in protocol order", ""),
    "AGE": ("age at enrollment", "years"),
    "SEX": ("sex: M or F", ""),
    "PARAMCD": ("parameter code: EFS, OS, REL", ""),
    "PARAM": ("parameter", ""),
    "PARAMN": ("parameter number", ""),
    "AVAL": ("analysis value: time from STARTDY to the event or censoring (+1 if add_one_day)", "days"),
    "AVALU": ("unit of AVAL", ""),
    "CNSR": ("censor: 0 event, 1 censored (end of follow-up or transplant), 2 REL only: death without relapse", ""),
    "EVNTDESC": ("event description (empty when censored)", ""),
    "CNSDTDSC": ("censoring description (empty for an event)", ""),
    "STARTDY": ("analysis origin (protocol EFS/OS origin), study day since enrollment (STARTDT equivalent)", "days"),
    "ADY": ("study day of the event or censoring since enrollment (ADT equivalent)", "days"),
}


def adtte(run_dir: str | Path, *, add_one_day: bool = False) -> pd.DataFrame:
    """ADTTE of a completed run directory: one row per analysed patient (simulation status ok) and PARAMCD."""
    return _adtte(read_run(run_dir), add_one_day)


def _adtte(run: RunDirectory, add_one_day: bool) -> pd.DataFrame:
    patients, _ = analysed(run.patients)
    protocol = run.protocol
    arm_number = {arm.name: k + 1 for k, arm in enumerate(protocol.arms)}

    def number(column: str) -> np.ndarray:
        return patients[column].astype("Float64").to_numpy(float, na_value=np.nan)

    def flag(column: str) -> np.ndarray:
        return patients[column].astype("boolean").fillna(False).to_numpy(bool)

    efs_event, os_event, relapse = flag("efs_event"), flag("os_event"), flag("relapse")
    efs_days, os_days = number("efs_days"), number("os_days")
    efs_origin, os_origin = number("efs_origin_day"), number("os_origin_day")
    hsct_censored = (~efs_event & flag("hsct") & protocol.endpoints.efs.censor_at_hsct
                     & np.isclose(efs_days, number("hsct_day")))
    efs_kind = patients["efs_event_type"].astype("string").fillna("").to_numpy(object)
    death_day = os_origin + os_days  # since enrollment
    rel_day = np.where(relapse, efs_origin + number("relapse_day"), death_day)
    rel_cnsr = np.where(relapse, 0, np.where(os_event, 2, 1))
    parameters = {
        "EFS": (efs_origin, efs_days, np.where(efs_event, 0, 1),
                np.where(efs_event, [_EVENTS.get(k, k.upper()) for k in efs_kind], ""),
                np.where(efs_event, "", np.where(hsct_censored, "ALLOGENEIC HSCT", _END))),
        "OS": (os_origin, os_days, np.where(os_event, 0, 1), np.where(os_event, "DEATH", ""),
               np.where(os_event, "", _END)),
        "REL": (efs_origin, rel_day - efs_origin, rel_cnsr, np.where(relapse, "RELAPSE", ""),
                np.select([relapse, os_event], ["", "DEATH WITHOUT RELAPSE (COMPETING EVENT)"], _END)),
    }
    frames = []
    for code, (start, aval, cnsr, event, censor) in parameters.items():
        frames.append(pd.DataFrame({
            "STUDYID": protocol.name,
            "USUBJID": [f"{protocol.name}-{pid:06d}" for pid in patients["patient_id"]],
            "SUBJID": patients["patient_id"].to_numpy(np.int64),
            "ARM": patients["arm"].astype(str).to_numpy(),
            "TRT01P": patients["arm"].astype(str).to_numpy(),
            "TRT01PN": patients["arm"].map(arm_number).to_numpy(np.int64),
            "AGE": patients["age_years"].to_numpy(float),
            "SEX": patients["sex"].astype(str).to_numpy(),
            "PARAMCD": code,
            "PARAM": PARAMETERS[code][1],
            "PARAMN": PARAMETERS[code][0],
            "AVAL": aval + (1.0 if add_one_day else 0.0),
            "AVALU": "DAYS",
            "CNSR": np.asarray(cnsr, dtype=np.int64),
            "EVNTDESC": event,
            "CNSDTDSC": censor,
            "STARTDY": start,
            "ADY": start + aval,
        }))
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["USUBJID", "PARAMN"], kind="stable").reset_index(drop=True)[list(COLUMNS)]


def write_adtte(run_dir: str | Path, out: str | Path, *, add_one_day: bool = False) -> list[Path]:
    """Write the ADTTE of ``run_dir`` to ``out`` (``.csv`` or ``.parquet``) and its data dictionary
    ``<out stem>.dictionary.json``; return both paths."""
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: expected a .csv or .parquet file name")
    run = read_run(run_dir)
    table = _adtte(run, add_one_day)
    if out.suffix == ".csv":
        table.to_csv(out, index=False, float_format="%.10g")
    else:
        table.to_parquet(out, index=False)
    _, left_out = analysed(run.patients)
    efs = run.protocol.endpoints.efs
    dictionary = write_dictionary(out, {
        "structure": "ADaM BDS time-to-event (ADTTE-like): one row per subject and PARAMCD",
        "source_run": {key: run.manifest.get(key) for key in ("protocol", "protocol_hash", "seed", "n_patients")},
        "time_origin": f"STARTDY: EFS and REL from the protocol's EFS origin ({efs.origin}), OS from its OS origin "
                       f"({run.protocol.endpoints.os.origin}); study days count from enrollment (day 0).",
        "aval": "AVAL = ADY - STARTDY" + (" + 1 (admiral convention)" if add_one_day else
                                          " (no +1-day convention; admiral adds 1)"),
        "efs_definition": {"events": list(efs.events), "no_response_time": efs.no_response_time,
                           "censor_at_hsct": efs.censor_at_hsct},
        "cnsr": {"0": "event", "1": "censored at end of follow-up (EFS: or at allogeneic HSCT if the protocol "
                 "censors there)", "2": "REL only: death without relapse (competing event)"},
        "survival_tools": "R: Surv(AVAL, 1 - CNSR) for EFS/OS; lifelines: event_observed = CNSR == 0.",
        "left_out": f"{left_out} patients whose simulation failed (status != ok) or who were never randomised",
        "arms": [{"TRT01PN": k + 1, "TRT01P": arm.name} for k, arm in enumerate(run.protocol.arms)],
        "columns": [{"column": name, "description": text, "unit": unit, "type": str(table[name].dtype)}
                    for name, (text, unit) in COLUMNS.items()],
    })
    return [out, dictionary]
