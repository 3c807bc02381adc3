"""One patient's observations in leukosim's NM-TRAN format (:mod:`leukosim.io.nonmem`), read with a located
error (file:line:column) for anything the format does not allow."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..io.nonmem import COLUMNS, COMPARTMENTS, ENDPOINTS

__all__ = ["PatientData", "PatientDataError", "read_patient_data", "BASELINE_COLUMNS"]

#: Columns that describe the patient at baseline: constant over the records of a patient.
BASELINE_COLUMNS = ("ID", "ARM", "AGE", "SEX", "WT", "HT", "BSA", "BLAST", "WBC", "PHSCT", "LATE", "ORIG")
_CODES = {"EVID": (0, 1, 2), "MDV": (0, 1), "BLQ": (0, 1), "SEX": (0, 1), "PHSCT": (0, 1), "LATE": (0, 1),
          "HSCT": (0, 1)}
_DVIDS = tuple(e.dvid for e in ENDPOINTS)
_BLINATUMOMAB_CMT = next(c.number for c in COMPARTMENTS if c.name == "BLINATUMOMAB")


class PatientDataError(ValueError):
    """A patient data file that cannot be used, located as ``file:line:column: message``."""


@dataclass(frozen=True)
class PatientData:
    """One patient's observations (EVID 0; times in days since enrollment) and baseline covariates."""

    path: Path
    patient_id: int  # leukosim patient id (ID - 1)
    arm: int  # ARM, 1-based
    baseline: dict[str, float]  # BASELINE_COLUMNS without ID -> value
    time: NDArray[np.float64]
    dvid: NDArray[np.int64]
    dv: NDArray[np.float64]  # unit by DVID; = LLOQ where BLQ
    blq: NDArray[np.bool_]
    blinatumomab: NDArray[np.float64]  # infusions: rows (start day, end day, rate ug/day)

    def counts(self) -> dict[str, int]:
        """Observations by endpoint name (BLQ included)."""
        return {e.name: int((self.dvid == e.dvid).sum()) for e in ENDPOINTS if (self.dvid == e.dvid).any()}


def read_patient_data(path: str | Path) -> PatientData:
    """The observations and covariates of the one patient in the CSV ``path`` (columns
    :data:`leukosim.io.nonmem.COLUMNS`, as ``leukosim export nonmem`` writes them). Raises
    :class:`PatientDataError` naming the file, line and column at fault."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise PatientDataError(f"{path}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise PatientDataError(f"{path}: not a CSV text file ({error})") from None
    if not rows:
        raise PatientDataError(f"{path}:1: empty file; expected a header row with {', '.join(COLUMNS)}")
    header = [name.strip() for name in rows[0]]

    def fail(line: int, column: str | None, message: str) -> PatientDataError:
        where = f"{path}:{line}" + (f":{header.index(column) + 1} ({column})" if column in header else "")
        return PatientDataError(f"{where}: {message}")

    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise fail(1, None, f"missing column(s) {', '.join(missing)}; a leukosim NONMEM dataset has "
                            f"{', '.join(COLUMNS)}")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise fail(1, unknown[0], f"unknown column {unknown[0]!r}; expected only {', '.join(COLUMNS)}")
    if len(set(header)) != len(header):
        raise fail(1, None, "a column name appears twice")
    records: list[dict[str, float]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise fail(line, None, f"{len(row)} items, the header has {len(header)}")
        record: dict[str, float] = {}
        for name, cell in zip(header, row):
            try:
                value = float(cell)
            except ValueError:
                raise fail(line, name, f"{cell.strip()!r} is not a number") from None
            if not math.isfinite(value):
                raise fail(line, name, f"{cell.strip()!r} is not a finite number")
            if name in _CODES and value not in _CODES[name]:
                raise fail(line, name, f"{cell.strip()} is not one of {', '.join(map(str, _CODES[name]))}")
            record[name] = value
        _check_record(record, records[-1] if records else None, lambda column, message: fail(line, column, message))
        records.append(record)
    observations = [r for r in records if r["EVID"] == 0]
    if not observations:
        raise fail(len(rows), None, "no observation records (EVID 0): nothing to fit")
    first = records[0]
    return PatientData(
        path=path,
        patient_id=int(first["ID"]) - 1,
        arm=int(first["ARM"]),
        baseline={name: first[name] for name in BASELINE_COLUMNS if name != "ID"},
        time=np.array([r["TIME"] for r in observations]),
        dvid=np.array([int(r["DVID"]) for r in observations], dtype=np.int64),
        dv=np.array([r["DV"] for r in observations]),
        blq=np.array([r["BLQ"] == 1 for r in observations]),
        blinatumomab=np.array([(r["TIME"], r["TIME"] + r["AMT"] / r["RATE"], r["RATE"]) for r in records
                               if r["EVID"] == 1 and r["CMT"] == _BLINATUMOMAB_CMT]).reshape(-1, 3),
    )


def _check_record(record: dict[str, float], previous: dict[str, float] | None,
                  fail: Callable[[str | None, str], PatientDataError]) -> None:
    """Raise (through ``fail(column, message)``) what one record breaks of the format."""
    if record["ID"] < 1 or record["ID"] != int(record["ID"]):
        raise fail("ID", f"ID must be a positive whole number, got {record['ID']:g}")
    if record["TIME"] < 0:
        raise fail("TIME", f"TIME must be >= 0 days, got {record['TIME']:g}")
    if previous is not None:
        if record["ID"] != previous["ID"]:
            raise fail("ID", f"a second patient (ID {record['ID']:g} after {previous['ID']:g}): the file must hold "
                             "one patient (filter the dataset by ID)")
        if record["TIME"] < previous["TIME"]:
            raise fail("TIME", f"TIME goes back ({record['TIME']:g} after {previous['TIME']:g}); records must be "
                               "sorted by time")
        for name in BASELINE_COLUMNS:
            if record[name] != previous[name]:
                raise fail(name, f"baseline covariate {name} changes within the patient "
                                 f"({previous[name]:g} -> {record[name]:g})")
    for name in ("AGE", "WT", "HT", "BSA"):
        if record[name] <= 0:
            raise fail(name, f"{name} must be > 0, got {record[name]:g}")
    if not 0 <= record["BLAST"] <= 100:
        raise fail("BLAST", f"BLAST is a marrow blast percent in [0, 100], got {record['BLAST']:g}")
    if record["EVID"] == 0:
        if record["DVID"] not in _DVIDS:
            raise fail("DVID", f"DVID {record['DVID']:g} of an observation is not one of "
                               f"{', '.join(f'{e.dvid} {e.name}' for e in ENDPOINTS)}")
        if record["MDV"] != 0:
            raise fail("MDV", f"an observation (EVID 0) must have MDV 0, got {record['MDV']:g}")
        if record["DV"] <= 0:
            raise fail("DV", f"DV must be > 0 (log-normal residual error; BLQ records carry DV = LLOQ), "
                             f"got {record['DV']:g}")
        if record["BLQ"] == 1 and record["DV"] != record["LLOQ"]:
            raise fail("DV", f"a BLQ observation carries DV = LLOQ ({record['LLOQ']:g}), got {record['DV']:g}")
    elif record["EVID"] == 1 and record["CMT"] == _BLINATUMOMAB_CMT and not (record["RATE"] > 0 < record["AMT"]):
        raise fail("RATE", "a blinatumomab dose record is an infusion: RATE > 0 (ug/day) and AMT > 0 (ug)")
    elif record["BLQ"] != 0 or record["DVID"] != 0:
        raise fail("DVID" if record["DVID"] != 0 else "BLQ", "only observations (EVID 0) carry DVID and BLQ")
