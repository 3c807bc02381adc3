"""Streamed, resumable runs: simulate a protocol chunk by chunk on a backend straight into a run directory.

:func:`run_trial` writes, in this order:

1. ``settings.json``: what determines the results (protocol and parameter-set hashes, seed, number of patients,
   chunk size, recorded patients). ``resume=True`` refuses a directory whose settings differ.
2. ``parts/<table>-<first>-<stop>.parquet`` for each chunk of patient ids ``first`` to ``stop - 1`` (tables
   ``trajectories``, ``events`` then ``patients``, each atomically; a chunk is done when its patients part
   exists). Memory holds a few chunks at a time whatever the number of patients; a resumed run computes only
   the chunks that are not done.
3. ``patients.parquet``, ``events.parquet``, ``trajectories.parquet``: the parts streamed in patient-id order
   into canonical files (:mod:`leukosim.io.parquet`), byte-identical whatever the backend, the number of
   workers, the chunk size, or interruptions, and to :func:`leukosim.io.rundir.write_run` of
   :func:`leukosim.trial.simulate_trial`'s result with the same settings.
4. ``summary.json`` from the statistics columns of the patient table only (text as categoricals; a million
   eliana patients with the report peaked at 1.5 GB, README "Speed"), ``protocol.json``, then ``manifest.json``
   LAST: a directory without a manifest is never a complete run. The parts are removed after the manifest is
   written. The statistics tables are returned too (:attr:`RunOutcome.statistics`), so the report need not compute
   them again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from . import __version__
from .backends import Backend, ChunkParts, ChunkTask, LocalBackend
from .endpoints.summary import trial_statistics
from .io.memory import release_memory
from .io.parquet import canonical_schema, write_canonical
from .io.rundir import (
    EVENTS, MANIFEST, PATIENTS, SUMMARY, TRAJECTORIES, file_metadata, read_statistics_patients, write_manifest,
    write_atomically, write_protocol, write_summary,
)
from .model.registry import ParameterSet, default_parameters
from .protocol.load import load_protocol, protocol_hash
from .protocol.schema import Protocol
from .trial import DEFAULT_CHUNK_SIZE, DEFAULT_TRAJECTORY_PATIENTS, chunk_ranges, run_manifest

__all__ = ["run_trial", "RunOutcome", "RunSettingsError", "SETTINGS", "PARTS"]

SETTINGS = "settings.json"
PARTS = "parts"
_TABLES = {"trajectories": TRAJECTORIES, "events": EVENTS, "patients": PATIENTS}  # write order: patients last


class RunSettingsError(ValueError):
    """A run directory cannot be resumed with these settings (the message names the file and the field)."""


@dataclass(frozen=True)
class RunOutcome:
    """A completed run directory: its path, manifest, how many chunks this call computed, and the statistics
    tables of its ``summary.json`` (:func:`~leukosim.endpoints.summary.trial_statistics`) when this call wrote it
    (``None`` when the run was complete already)."""

    path: Path
    manifest: dict[str, object]
    computed_chunks: int
    statistics: dict[str, pd.DataFrame] | None = None

    def summary(self) -> pd.DataFrame:
        """Main endpoints of each arm, as in ``summary.json`` (table ``main``)."""
        document = json.loads((self.path / SUMMARY).read_text())
        return pd.DataFrame(document["tables"]["main"], columns=["arm", "endpoint", "value", "n"])


def _part(parts: Path, table: str, first: int, stop: int) -> Path:
    return parts / f"{table}-{first:010d}-{stop:010d}.parquet"


def _store(parts: Path, chunk: ChunkParts) -> None:
    """A chunk's parts, atomically, the patients part (the chunk's completion mark) last."""
    for table in _TABLES:
        write_atomically(_part(parts, table, chunk.first, chunk.stop), getattr(chunk, table))


def _settings(protocol: Protocol, parameters: ParameterSet, seed: int, n_patients: int, chunk_size: int,
              trajectory_patients: int) -> dict[str, object]:
    return {"leukosim_version": __version__, "protocol": protocol.name, "protocol_hash": protocol_hash(protocol),
            "parameter_set": parameters.name, "parameter_set_hash": parameters.hash(), "seed": seed,
            "n_patients": n_patients, "chunk_size": chunk_size, "trajectory_patients": trajectory_patients}


def _check_resumable(path: Path, wanted: dict[str, object]) -> None:
    if not path.exists():
        raise RunSettingsError(f"{path.parent}: nothing to resume (no {SETTINGS}; was it written by "
                               "`leukosim run`?)")
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunSettingsError(f"{path}: unreadable ({error})") from None
    differences = [f"{key} was {stored.get(key)!r}, now {value!r}" for key, value in wanted.items()
                   if stored.get(key) != value]
    if differences:
        raise RunSettingsError(f"{path}: cannot resume with other settings: {'; '.join(differences)}. Resume "
                               "with the interrupted run's settings, or start a new run without --resume.")


def _stored_chunk_size(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text()).get("chunk_size")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value >= 1 else None


def _assemble(parts: Path, ranges: list[tuple[int, int]], out: Path, metadata: dict[str, str]) -> None:
    """The canonical tables from the parts, streamed in patient-id order (one part in memory at a time)."""
    for table, name in _TABLES.items():
        files = [_part(parts, table, first, stop) for first, stop in ranges]
        schema = canonical_schema([pq.read_schema(f) for f in files])

        def pieces(files: list[Path] = files) -> Iterator:  # noqa: ANN401 (pyarrow tables)
            for f in files:
                yield pq.read_table(f)

        write_canonical(pieces(), schema, out / name, metadata)


def run_trial(protocol: Protocol | str | Path, n_patients: int, out_dir: str | Path, seed: int = 0,
              parameters: ParameterSet | None = None, backend: Backend | None = None,
              chunk_size: int | None = None, trajectory_patients: int = DEFAULT_TRAJECTORY_PATIENTS,
              resume: bool = False, progress: Callable[[int], None] | None = None) -> RunOutcome:
    """Simulate ``n_patients`` virtual patients on ``protocol`` with ``backend`` (default: this process) and
    write the run directory ``out_dir`` chunk by chunk (``chunk_size`` patients, default 20,000, or the
    interrupted run's when resuming). ``resume=True`` finishes an interrupted run of the same settings;
    ``progress`` is called with the number of patients each finished (or already done) chunk adds."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if trajectory_patients < 0:
        raise ValueError(f"trajectory_patients must be at least 0, got {trajectory_patients}")
    if not isinstance(protocol, Protocol):
        protocol = load_protocol(protocol)
    parameters = parameters or default_parameters()
    out, backend = Path(out_dir), backend or LocalBackend()
    settings_path, parts = out / SETTINGS, out / PARTS
    if resume and chunk_size is None:
        chunk_size = _stored_chunk_size(settings_path)
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    settings = _settings(protocol, parameters, seed, n_patients, chunk_size, trajectory_patients)
    if resume:
        _check_resumable(settings_path, settings)
        if (out / MANIFEST).exists():
            if progress is not None:
                progress(n_patients)
            return RunOutcome(out, json.loads((out / MANIFEST).read_text()), 0)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
        write_atomically(settings_path, json.dumps(settings, indent=1) + "\n")
    parts.mkdir(exist_ok=True)

    ranges = chunk_ranges(n_patients, chunk_size)
    todo = [(first, stop) for first, stop in ranges if not _part(parts, "patients", first, stop).exists()]
    if progress is not None and len(todo) < len(ranges):
        progress(n_patients - sum(stop - first for first, stop in todo))
    task = ChunkTask(protocol, parameters, seed, trajectory_patients)
    timings: dict[str, float] = {}
    with backend:
        compile_s = backend.prepare(task) if todo else None
        if compile_s is not None:
            timings["compile"] = compile_s
        started = time.perf_counter()
        for chunk in backend.map(task, todo):
            _store(parts, chunk)
            if progress is not None:
                progress(chunk.stop - chunk.first)
        timings["simulate"] = time.perf_counter() - started
    release_memory()  # each stage below starts from what it holds, not from the previous one's peak
    computed = sum(stop - first for first, stop in todo)
    timings["patients_per_s"] = computed / timings["simulate"] if computed and timings["simulate"] > 0 else 0.0

    started = time.perf_counter()
    manifest = run_manifest(protocol, parameters, seed, n_patients, trajectory_patients, backend.describe(),
                            timings, chunk_size, resumed=len(todo) < len(ranges))
    write_protocol(out, protocol)
    _assemble(parts, ranges, out, file_metadata(manifest))
    release_memory()
    statistics = trial_statistics(protocol, read_statistics_patients(out / PATIENTS))
    write_summary(out, protocol, statistics)
    release_memory()
    timings["assemble_and_summarise"] = time.perf_counter() - started
    write_manifest(out, manifest)
    shutil.rmtree(parts, ignore_errors=True)
    return RunOutcome(out, manifest, len(todo), statistics)
