"""Run directories.

A run directory holds ``protocol.json`` (the validated protocol as run), ``patients.parquet`` (one row per
patient), ``events.parquet`` (one row per event), ``trajectories.parquet`` (readouts of the recorded patients on
a day grid), ``summary.json`` (every statistics table) and ``manifest.json``, written last so an interrupted run
never looks complete."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..endpoints.summary import statistics_columns, trial_statistics
from ..protocol.load import parse_protocol
from ..protocol.schema import Protocol
from ..trial import TrialResult
from .jsonsafe import json_safe
from .parquet import canonical_schema, read_frame, to_arrow, write_canonical
from ..notice import NOTICE

__all__ = ["write_run", "read_run", "read_patients", "read_statistics_patients", "read_events", "write_summary",
           "write_protocol", "write_manifest", "write_atomically",
           "file_metadata", "RunDirectory", "MANIFEST", "PATIENTS",
           "EVENTS", "TRAJECTORIES", "SUMMARY", "PROTOCOL"]

MANIFEST = "manifest.json"
PATIENTS = "patients.parquet"
EVENTS = "events.parquet"
TRAJECTORIES = "trajectories.parquet"
SUMMARY = "summary.json"
PROTOCOL = "protocol.json"


def _write_parquet(frame: pd.DataFrame, path: Path, metadata: dict[str, str]) -> None:
    """One in-memory table as a canonical Parquet file (the same bytes as the chunk-by-chunk path)."""
    table = to_arrow(frame)
    write_canonical([table], canonical_schema([table.schema]), path, metadata)


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through ``<path>.partial`` and a rename, so a reader never sees
    a half-written file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(partial, path)


def summary_document(protocol: Protocol, tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """``summary.json`` content: every statistics table (:func:`~leukosim.endpoints.summary.trial_statistics`) as
    a list of records (NaN -> null, inf -> "inf")."""
    return {
        "protocol": protocol.name,
        "notice": NOTICE,
        "tables": {name: json_safe(table.astype(object).to_dict(orient="records")) for name, table in tables.items()},
    }


def write_summary(run_dir: str | Path, protocol: Protocol, tables: dict[str, pd.DataFrame]) -> Path:
    """Write ``summary.json`` of a run directory from its statistics tables and return its path."""
    path = Path(run_dir) / SUMMARY
    document = summary_document(protocol, tables)
    write_atomically(path, json.dumps(document, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    return path


def file_metadata(manifest: dict[str, object]) -> dict[str, str]:
    """Provenance stored in each Parquet file of a run: protocol and parameter-set hashes, seed."""
    return {"leukosim.protocol_hash": str(manifest["protocol_hash"]),
            "leukosim.parameter_set_hash": str(manifest["parameter_set_hash"]),
            "leukosim.seed": str(manifest["seed"])}


def write_run(result: TrialResult, out_dir: str | Path) -> Path:
    """Write the run directory and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    manifest = result.manifest()
    provenance = file_metadata(manifest)
    write_protocol(out, result.protocol)
    patients = result.patients.sort_values("patient_id", kind="stable").reset_index(drop=True)
    _write_parquet(patients, out / PATIENTS, provenance)
    _write_parquet(result.events, out / EVENTS, provenance)
    _write_parquet(result.trajectories, out / TRAJECTORIES, provenance)
    write_summary(out, result.protocol, trial_statistics(result.protocol, patients))
    write_manifest(out, manifest)
    return out


def write_protocol(run_dir: str | Path, protocol: Protocol) -> Path:
    """Write ``protocol.json`` (the validated protocol as run) and return its path."""
    path = Path(run_dir) / PROTOCOL
    write_atomically(path, json.dumps(protocol.model_dump(mode="json", by_alias=True), indent=1) + "\n")
    return path


def write_manifest(run_dir: str | Path, manifest: dict[str, object]) -> Path:
    """Write ``manifest.json``, the file that marks a run directory complete: call it last."""
    path = Path(run_dir) / MANIFEST
    write_atomically(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


@dataclass(frozen=True)
class RunDirectory:
    """A completed run directory, read back."""

    path: Path
    protocol: Protocol
    manifest: dict[str, object]
    patients: pd.DataFrame
    events: pd.DataFrame
    trajectories: pd.DataFrame


def _complete(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: not a directory")
    if not (run / MANIFEST).exists():
        raise FileNotFoundError(f"{run}: no {MANIFEST}; the run is incomplete or not a leukosim run directory")
    return run


def read_patients(run_dir: str | Path) -> pd.DataFrame:
    """The patient table of a completed run directory."""
    return pd.read_parquet(_complete(run_dir) / PATIENTS)


def read_statistics_patients(path: str | Path) -> pd.DataFrame:
    """The columns of the patient table at ``path`` that the statistics read
    (:func:`leukosim.endpoints.summary.statistics_columns`), text as categoricals: what ``summary.json`` and the
    report need, in a fraction of the memory of the whole table."""
    return read_frame(Path(path), statistics_columns(pq.read_schema(path).names))


def read_events(path: str | Path, patient_ids: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """The rows of the events table at ``path`` of the patients ``patient_ids``, as ``pd.read_parquet`` types
    them. Filtered while reading: the table is in patient-id order, and only the row groups whose patient-id range
    (from the file's statistics) holds one of them are decoded, one at a time."""
    ids = np.unique(np.asarray(patient_ids, dtype=np.int64))
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("patient_id")
    pieces = [file.schema_arrow.empty_table()]
    for group in range(file.metadata.num_row_groups):
        statistics = file.metadata.row_group(group).column(column).statistics
        if (statistics is not None and statistics.has_min_max
                and np.searchsorted(ids, statistics.min) == np.searchsorted(ids, statistics.max, side="right")):
            continue  # none of the ids in this row group's range
        table = file.read_row_group(group)
        pieces.append(table.filter(pc.is_in(table["patient_id"], pa.array(ids))))
    return pa.concat_tables(pieces).to_pandas()


def read_run(run_dir: str | Path, statistics_only: bool = False,
             event_patients: Callable[[pd.DataFrame, pd.DataFrame], Sequence[int]] | None = None) -> RunDirectory:
    """Everything in a completed run directory, or what a summary of a large run needs:
    ``statistics_only=True`` reads only the statistics columns of the patient table
    (:func:`read_statistics_patients`), ``event_patients(patients, trajectories)`` names the patients whose
    events are read (:func:`read_events`; default all)."""
    run = _complete(run_dir)
    missing = [name for name in (PROTOCOL, PATIENTS, EVENTS, TRAJECTORIES) if not (run / name).exists()]
    if missing:
        raise FileNotFoundError(f"{run}: missing {', '.join(missing)} (written by an older leukosim?)")
    patients = read_statistics_patients(run / PATIENTS) if statistics_only else pd.read_parquet(run / PATIENTS)
    trajectories = pd.read_parquet(run / TRAJECTORIES)
    events = (pd.read_parquet(run / EVENTS) if event_patients is None
              else read_events(run / EVENTS, event_patients(patients, trajectories)))
    return RunDirectory(path=run, protocol=parse_protocol((run / PROTOCOL).read_text(), str(run / PROTOCOL)),
                        manifest=json.loads((run / MANIFEST).read_text()),
                        patients=patients, events=events, trajectories=trajectories)
