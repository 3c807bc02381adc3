"""NM-TRAN style dataset of a run: dose records (blinatumomab infusions split at interruptions, inotuzumab,
CAR-T cells, lymphodepletion, chemotherapy blocks), transplant records, and observation records (assay-measured
MRD; CAR transgene, B cells and drug concentrations from the recorded trajectories), one row per record, numeric
columns only, with a pharmpy ``.datainfo`` sidecar and a JSON data dictionary.

Conventions (repeated in the dictionary): ``TIME`` in days since enrollment (day 0 = start of the arm's first
phase, which is randomization for randomized protocols; the EFS/OS origin of each patient is in ``ORIG``).
``ID`` = patient_id + 1. Records sorted by ID, TIME, then observations before other events before doses:
samples are drawn before that day's doses, as the protocol schedule defines assessments. Observations below
an assay's lower limit (MRD not detected, concentrations / transgene under the LLOQ) are kept with ``BLQ`` = 1
and ``DV`` = ``LLOQ`` (for Beal's M3/M4 methods; rxode2/nlmixr2 users map BLQ to ``CENS``). No cell is
missing: items that do not apply are 0, as NM-TRAN reads an empty item."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..observe.assays import (
    ASSAYS,
    BLINATUMOMAB_LLOQ_NG_PER_ML,
    CAR_QPCR_LLOQ_COPIES_PER_UG,
    INOTUZUMAB_LLOQ_NG_PER_ML,
)
from ..protocol.schema import Protocol
from ._export import analysed, write_dictionary
from .rundir import RunDirectory, read_run

__all__ = ["nonmem_dataset", "write_nonmem", "Compartment", "Endpoint", "COMPARTMENTS", "ENDPOINTS", "COLUMNS"]


@dataclass(frozen=True)
class Compartment:
    """A ``CMT`` number: what is dosed into or observed in it, and the dose unit (``AMT``)."""

    number: int
    name: str
    description: str
    dose_unit: str


@dataclass(frozen=True)
class Endpoint:
    """An observation type (``DVID``): its compartment, unit, lower limit and where its values come from."""

    dvid: int
    name: str
    cmt: int
    unit: str
    lloq: float  # 0 = no limit applied
    source: str
    description: str
    after_first_dose_of: str | None = None  # observed only from the first dose of this agent on


COMPARTMENTS: tuple[Compartment, ...] = (
    Compartment(1, "BLINATUMOMAB", "blinatumomab, central (continuous IV infusion)", "ug"),
    Compartment(2, "INOTUZUMAB", "inotuzumab ozogamicin, central (IV, given as bolus)", "mg"),
    Compartment(3, "CAR_T", "tisagenlecleucel CAR+ viable T cells (single IV infusion, as bolus)", "cells"),
    Compartment(4, "FLUDARABINE", "fludarabine (lymphodepletion, daily IV, as bolus)", "mg"),
    Compartment(5, "CYCLOPHOSPHAMIDE", "cyclophosphamide (lymphodepletion, daily IV, as bolus)", "mg"),
    Compartment(6, "CHEMOTHERAPY", "chemotherapy block: zero-order input of regimen intensity over the block "
                "(AMT = intensity x days; intensity 1 = the regimen as written)", "intensity x day"),
    Compartment(7, "LEUKEMIA", "leukemic cells in marrow (observation only)", ""),
    Compartment(8, "B_CELLS", "peripheral CD19+ B cells (observation only)", ""),
)
_CMT = {c.name: c.number for c in COMPARTMENTS}
_AGENT_CMT = {"blinatumomab": _CMT["BLINATUMOMAB"], "inotuzumab_ozogamicin": _CMT["INOTUZUMAB"],
              "tisagenlecleucel": _CMT["CAR_T"], "fludarabine": _CMT["FLUDARABINE"],
              "cyclophosphamide": _CMT["CYCLOPHOSPHAMIDE"]}
_CHEMOTHERAPY = "chemotherapy:"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(1, "MRD", _CMT["LEUKEMIA"], "fraction", 0.0, "events.parquet assessment rows",
             "MRD measured by the assessment's assay (leukemic / nucleated cells; marrow or blood as the protocol "
             "says); LLOQ per record = the assay's smallest reported positive result (min_events / cells_analysed)"),
    Endpoint(2, "CAR_TRANSGENE", _CMT["CAR_T"], "copies/ug gDNA", CAR_QPCR_LLOQ_COPIES_PER_UG,
             "trajectories.parquet car_copies_per_ug", "CAR transgene in blood by qPCR (model value, no assay "
             "error); LLOQ 50 copies/ug is an assumption", "tisagenlecleucel"),
    Endpoint(3, "B_CELLS", _CMT["B_CELLS"], "cells/uL", 0.0, "trajectories.parquet b_cells_per_uL",
             "peripheral CD19+ B cells (model value, no assay error; no LLOQ applied)"),
    Endpoint(4, "BLINATUMOMAB", _CMT["BLINATUMOMAB"], "ng/mL", BLINATUMOMAB_LLOQ_NG_PER_ML,
             "trajectories.parquet blinatumomab_ng_per_mL", "blinatumomab serum concentration (model value; LLOQ "
             "of the CD69 bioassay)", "blinatumomab"),
    Endpoint(5, "INOTUZUMAB", _CMT["INOTUZUMAB"], "ng/mL", INOTUZUMAB_LLOQ_NG_PER_ML,
             "trajectories.parquet inotuzumab_ng_per_mL", "inotuzumab ozogamicin serum concentration (model value; "
             "LLOQ of the HPLC-MS/MS assay)", "inotuzumab_ozogamicin"),
)
_TRAJECTORY_COLUMN = {e.dvid: e.source.split()[-1] for e in ENDPOINTS if e.source.startswith("trajectories")}

#: Column -> (description, unit, pharmpy type, coding).
COLUMNS: dict[str, tuple[str, str, str, str]] = {
    "ID": ("subject: leukosim patient_id + 1", "", "id", ""),
    "TIME": ("time since enrollment (day 0 = start of the arm's first phase)", "day", "idv", ""),
    "EVID": ("event identifier", "", "event", "0 observation, 1 dose, 2 other event (allogeneic HSCT)"),
    "MDV": ("missing dependent variable", "", "mdv", "0 DV is an observation, 1 otherwise"),
    "AMT": ("dose amount (unit by CMT, see compartments); 0 on non-dose records", "by CMT", "dose", ""),
    "RATE": ("infusion rate, AMT per day; 0 = bolus and on non-dose records", "AMT unit/day", "rate", ""),
    "CMT": ("compartment dosed or observed (see compartments); 0 on EVID 2", "", "compartment", ""),
    "DV": ("observed value (unit by DVID, see endpoints); 0 on non-observation records", "by DVID", "dv", ""),
    "DVID": ("observation type (see endpoints); 0 on non-observation records", "", "dvid", ""),
    "BLQ": ("observation below its lower limit (DV then equals LLOQ)", "", "blq", "0 no, 1 yes"),
    "LLOQ": ("lower limit applied to the observation; 0 = none or not an observation", "as DV", "lloq", ""),
    "ARM": ("randomized / assigned arm", "", "covariate", "arm number in protocol order (see arms)"),
    "AGE": ("age at enrollment", "year", "covariate", ""),
    "SEX": ("sex", "", "covariate", "0 female, 1 male"),
    "WT": ("body weight at enrollment", "kg", "covariate", ""),
    "HT": ("height at enrollment", "cm", "covariate", ""),
    "BSA": ("body-surface area at enrollment", "m2", "covariate", ""),
    "BLAST": ("marrow blasts at enrollment", "%", "covariate", ""),
    "WBC": ("white blood cells at enrollment", "cells/uL", "covariate", ""),
    "PHSCT": ("allogeneic HSCT before enrollment", "", "covariate", "0 no, 1 yes"),
    "LATE": ("late first relapse (>= 6 months after frontline therapy)", "", "covariate", "0 no, 1 yes"),
    "HSCT": ("time-varying: on or after the protocol's allogeneic HSCT", "", "covariate", "0 no, 1 yes"),
    "ORIG": ("EFS origin of the patient (day 0 of the ADTTE times), time since enrollment", "day", "covariate", ""),
}
_PHARMPY_UNITS = {"day": "d", "year": "yr", "kg": "kg", "cm": "cm", "m2": "m^2", "cells/uL": "1/uL"}
_DESCRIPTORS = {"ID": "subject identifier", "AGE": "age", "WT": "body weight", "HT": "body height",
                "BSA": "body surface area", "DVID": "observation identifier"}
_COVARIATES = ("ARM", "AGE", "SEX", "WT", "HT", "BSA", "BLAST", "WBC", "PHSCT", "LATE", "HSCT", "ORIG")
_INTEGER = ("ID", "EVID", "MDV", "CMT", "DVID", "BLQ", "ARM", "SEX", "PHSCT", "LATE", "HSCT")


def _pieces(start: float, end: float, gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of [start, end) outside the gaps (interruption windows)."""
    parts = [(start, end)]
    for gap_start, gap_end in gaps:
        parts = [piece for a, b in parts for piece in ((a, min(b, gap_start)), (max(a, gap_end), b))
                 if piece[1] - piece[0] > 1e-9]
    return parts


def _dose_records(events: pd.DataFrame) -> pd.DataFrame:
    """Dose records (EVID 1) of the events table; blinatumomab infusions split around interruptions."""
    doses = events[events["event"] == "dose"]
    gaps = {pid: list(zip(g["day"], g["day"] + g["duration"]))
            for pid, g in events[events["event"] == "interruption"].groupby("patient_id")}
    rows: list[tuple[int, float, float, float, int]] = []  # patient_id, TIME, AMT, RATE, CMT
    for pid, agent, day, value, duration in doses[["patient_id", "detail", "day", "value", "duration"]].itertuples(
            index=False):
        if agent.startswith(_CHEMOTHERAPY) or agent == "blinatumomab":
            cmt = _CMT["CHEMOTHERAPY"] if agent.startswith(_CHEMOTHERAPY) else _CMT["BLINATUMOMAB"]
            split = gaps.get(pid, []) if agent == "blinatumomab" else []
            rows += [(pid, a, value * (b - a), value, cmt) for a, b in _pieces(day, day + duration, split)]
        elif agent in _AGENT_CMT:
            rows.append((pid, day, value, 0.0, _AGENT_CMT[agent]))
        elif agent != "allogeneic_hsct":  # the transplant is an EVID 2 record
            raise ValueError(f"dose of unknown agent {agent!r} in the events table")
    frame = pd.DataFrame(rows, columns=["patient_id", "TIME", "AMT", "RATE", "CMT"])
    return frame.assign(EVID=1, MDV=1)


def _mrd_records(events: pd.DataFrame, protocol: Protocol, arms: pd.Series) -> pd.DataFrame:
    """MRD observations (DVID 1) from the assessments that measured MRD."""
    assays = {(arm.name, item.name): ASSAYS[item.assay] for arm in protocol.arms for phase in arm.phases
              for item in phase.assess}
    rows = events[(events["event"] == "assessment") & np.isfinite(events["value"].astype(float))]
    limit = np.array([assays[(arm, name)].min_events / assays[(arm, name)].cells_analysed
                      for arm, name in zip(rows["patient_id"].map(arms), rows["detail"])], dtype=float)
    value = rows["value"].to_numpy(float)
    blq = value < limit
    return pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "TIME": rows["day"].to_numpy(float),
                         "DV": np.where(blq, limit, value), "BLQ": blq.astype(int), "LLOQ": limit,
                         "DVID": 1, "CMT": _CMT["LEUKEMIA"]})


def _trajectory_records(trajectories: pd.DataFrame, doses: pd.DataFrame) -> pd.DataFrame:
    """Observations from the recorded trajectories (DVID 2-5), from the first dose of the agent they follow."""
    frames = []
    for endpoint in ENDPOINTS:
        column = _TRAJECTORY_COLUMN.get(endpoint.dvid)
        if column is None or column not in trajectories.columns:
            continue
        rows = trajectories[["patient_id", "day", column]].rename(columns={"day": "TIME", column: "DV"})
        rows = rows[np.isfinite(rows["DV"].astype(float))]
        if endpoint.after_first_dose_of is not None:
            first = doses[doses["CMT"] == _AGENT_CMT[endpoint.after_first_dose_of]].groupby("patient_id")["TIME"].min()
            rows = rows[rows["TIME"] >= rows["patient_id"].map(first).fillna(np.inf)]
        blq = rows["DV"].to_numpy(float) < endpoint.lloq
        frames.append(rows.assign(DV=np.where(blq, endpoint.lloq, rows["DV"]), BLQ=blq.astype(int),
                                  LLOQ=endpoint.lloq, DVID=endpoint.dvid, CMT=endpoint.cmt))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def nonmem_dataset(run_dir: str | Path) -> pd.DataFrame:
    """The NM-TRAN dataset of a completed run directory (columns :data:`COLUMNS`, all numeric), patients whose
    simulation failed left out. Raises FileNotFoundError / ValueError on an incomplete or inconsistent run."""
    return _dataset(read_run(run_dir))


def _dataset(run: RunDirectory) -> pd.DataFrame:
    patients, _ = analysed(run.patients)
    events = run.events[run.events["patient_id"].isin(patients["patient_id"])]
    logged = events[events["event"] == "interruption"].groupby("patient_id").size()
    counted = patients.set_index("patient_id")["blinatumomab_interruptions"].astype(int)
    if (counted > logged.reindex(counted.index, fill_value=0)).any():
        raise ValueError(f"{run.path}: more blinatumomab interruptions than the events table logs; the infusions "
                         "cannot be reconstructed")
    doses = _dose_records(events)
    hsct = events[events["event"] == "hsct"]
    other = pd.DataFrame({"patient_id": hsct["patient_id"].to_numpy(), "TIME": hsct["day"].to_numpy(float),
                          "EVID": 2, "MDV": 1, "CMT": 0})
    trajectories = run.trajectories[run.trajectories["patient_id"].isin(patients["patient_id"])]
    observations = pd.concat([_mrd_records(events, run.protocol, patients.set_index("patient_id")["arm"]),
                              _trajectory_records(trajectories, doses)], ignore_index=True).assign(EVID=0, MDV=0)
    records = pd.concat([observations, other, doses], ignore_index=True)
    records = records.reindex(columns=[c for c in COLUMNS if c not in ("ID", *_COVARIATES)] + ["patient_id"])
    records = records.fillna(0.0)

    arm_number = {arm.name: k + 1 for k, arm in enumerate(run.protocol.arms)}
    covariates = pd.DataFrame({
        "patient_id": patients["patient_id"].to_numpy(),
        "ID": patients["patient_id"].to_numpy() + 1,
        "ARM": patients["arm"].map(arm_number).to_numpy(),
        "AGE": patients["age_years"].to_numpy(float),
        "SEX": (patients["sex"].astype(str) == "M").to_numpy(int),
        "WT": patients["weight_kg"].to_numpy(float),
        "HT": patients["height_cm"].to_numpy(float),
        "BSA": patients["bsa_m2"].to_numpy(float),
        "BLAST": patients["marrow_blasts_percent"].to_numpy(float),
        "WBC": patients["wbc_per_uL"].to_numpy(float),
        "PHSCT": patients["prior_hsct"].astype(bool).to_numpy(int),
        "LATE": patients["late_relapse"].astype(bool).to_numpy(int),
        "ORIG": patients["efs_origin_day"].astype(float).to_numpy(float),
    })
    records = records.merge(covariates, on="patient_id", how="left", validate="many_to_one")
    transplant = hsct.groupby("patient_id")["day"].min()
    records["HSCT"] = (records["TIME"] >= records["patient_id"].map(transplant).fillna(np.inf)).astype(int)
    records["_order"] = records["EVID"].map({0: 0, 2: 1, 1: 2})
    records = records.sort_values(["ID", "TIME", "_order", "CMT", "DVID"], kind="stable").reset_index(drop=True)
    records = records[list(COLUMNS)]
    return records.astype({c: np.int64 for c in _INTEGER})


def _datainfo(csv_name: str) -> dict[str, object]:
    """The pharmpy DataInfo document of the dataset (read by ``DataInfo.read_json``). AMT and DV carry no unit
    there: theirs depend on CMT and DVID (pharmpy's per-DVID mapping of DV breaks its column subsetting in 2.1)."""
    columns = []
    for name, (_, unit, kind, _coding) in COLUMNS.items():
        nominal = name in _INTEGER
        properties: dict[str, object] = {}
        if unit in _PHARMPY_UNITS:
            properties["unit"] = _PHARMPY_UNITS[unit]
        if name in _DESCRIPTORS:
            properties["descriptor"] = _DESCRIPTORS[name]
        variable = {"name": name, "type": kind, "scale": "nominal" if nominal else "ratio", "count": False,
                    "properties": properties}
        columns.append({"name": name, "drop": False, "datatype": "int32" if nominal else "float64",
                        "variable_id": None, "variable_mapping": variable})
    return {"columns": columns, "path": csv_name, "separator": ",", "missing_data_token": ".",
            "provenance": {"operations": []}, "__version__": 1}


def write_nonmem(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Write the dataset of ``run_dir`` to the CSV ``out``, its pharmpy sidecar ``<out stem>.datainfo`` and its
    data dictionary ``<out stem>.dictionary.json``; return the three paths."""
    out = Path(out)
    run = read_run(run_dir)
    data = _dataset(run)
    _, left_out = analysed(run.patients)
    data.to_csv(out, index=False, float_format="%.10g")
    datainfo = out.with_suffix(".datainfo")
    datainfo.write_text(json.dumps(_datainfo(out.name), indent=1) + "\n")
    dictionary = write_dictionary(out, {
        "format": "NM-TRAN data file: comma-separated, header row, numeric items only, no missing items",
        "source_run": {key: run.manifest.get(key) for key in ("protocol", "protocol_hash", "seed", "n_patients")},
        "time_origin": "TIME = days since enrollment (day 0 = start of the arm's first phase; for randomized "
                       "protocols the randomization). ORIG gives each patient's EFS/OS origin on the same clock "
                       "(e.g. the CAR-T infusion day); TIME - ORIG is time on the ADTTE scale.",
        "record_order": "ID, TIME, then observations (EVID 0), other events (EVID 2), doses (EVID 1): samples at "
                        "a dose time are pre-dose, as the protocol schedule takes assessments before that day's "
                        "doses.",
        "blq": "Observations below their lower limit are kept with BLQ = 1 and DV = LLOQ (M3/M4-ready; rxode2 / "
               "nlmixr2: CENS = BLQ). MRD not detected by its assay is BLQ. Trajectory-based observations are "
               "noise-free model values sampled on the run's day grid for the recorded patients only.",
        "infusions": "Blinatumomab continuous infusions are dose records with RATE in ug/day and AMT = RATE x "
                     "duration, split into separate records around CRS-driven interruptions and stopped at death "
                     "or relapse. Chemotherapy blocks are zero-order inputs of regimen intensity into CMT 6.",
        "left_out": f"{left_out} patients whose simulation failed (status != ok) or who were never randomised",
        "columns": [{"column": name, "description": text, "unit": unit, "type": kind, "coding": coding}
                    for name, (text, unit, kind, coding) in COLUMNS.items()],
        "compartments": [{"CMT": c.number, "name": c.name, "description": c.description,
                          "dose_unit": c.dose_unit} for c in COMPARTMENTS],
        "endpoints": [{"DVID": e.dvid, "name": e.name, "CMT": e.cmt, "unit": e.unit, "LLOQ": e.lloq or None,
                       "source": e.source, "description": e.description,
                       "records_from_first_dose_of": e.after_first_dose_of} for e in ENDPOINTS],
        "arms": [{"ARM": k + 1, "name": arm.name} for k, arm in enumerate(run.protocol.arms)],
    })
    return [out, datainfo, dictionary]
