"""Run directories: ``patients.parquet`` (one row per patient), ``events.parquet`` (one row per event) and
``manifest.json``, written last so an interrupted run never looks complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..trial import TrialResult

__all__ = ["write_run", "read_patients", "MANIFEST", "PATIENTS", "EVENTS"]

MANIFEST = "manifest.json"
PATIENTS = "patients.parquet"
EVENTS = "events.parquet"


def _write_parquet(frame: pd.DataFrame, path: Path, metadata: dict[str, str]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           **{k.encode(): v.encode() for k, v in metadata.items()}})
    partial = path.with_suffix(path.suffix + ".partial")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)


def write_run(result: TrialResult, out_dir: str | Path) -> Path:
    """Write the run directory and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    manifest = result.manifest()
    provenance = {"leukosim.protocol_hash": str(manifest["protocol_hash"]),
                  "leukosim.parameter_set_hash": str(manifest["parameter_set_hash"]),
                  "leukosim.seed": str(result.seed)}
    _write_parquet(result.patients.sort_values("patient_id", kind="stable").reset_index(drop=True),
                   out / PATIENTS, provenance)
    _write_parquet(result.events, out / EVENTS, provenance)
    partial = out / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, out / MANIFEST)
    return out


def read_patients(run_dir: str | Path) -> pd.DataFrame:
    """The patient table of a completed run directory."""
    run = Path(run_dir)
    if not (run / MANIFEST).exists():
        raise FileNotFoundError(f"{run}: no {MANIFEST}; the run is incomplete or not a leukosim run directory")
    return pd.read_parquet(run / PATIENTS)
