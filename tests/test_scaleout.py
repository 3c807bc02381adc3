"""Scale-out, bit-for-bit: ``patients.parquet`` (and the other tables) are byte-identical whatever the backend
(this process, Dask with 1 or 2 workers), the chunk size, an interruption followed by ``--resume``, or a Dask
worker killed mid-run; the in-memory path (``simulate_trial`` + ``write_run``) writes the same bytes. An
interrupted run never leaves a directory that reads as complete. The Dask clusters are started here
(``LocalCluster``, processes, one thread per worker)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from leukosim import simulate_trial
from leukosim.backends import Backend, DaskBackend, LocalBackend, worker_environment
from leukosim.cli import app
from leukosim.io.parquet import canonical_schema, to_arrow, write_canonical
from leukosim.io.rundir import read_run, write_run
from leukosim.runner import PARTS, RunSettingsError, run_trial

distributed = pytest.importorskip("distributed")

PROTOCOL, N, SEED, RECORDED = "aall1331", 300, 3, 20
TABLES = ("patients.parquet", "events.parquet", "trajectories.parquet")
runner = CliRunner()


def digests(run_dir: Path) -> dict[str, str]:
    return {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in TABLES}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Digests of the in-memory path: one chunk, written by ``write_run``."""
    out = tmp_path_factory.mktemp("reference")
    write_run(simulate_trial(PROTOCOL, N, SEED, chunk_size=N, trajectory_patients=RECORDED), out)
    return digests(out)


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[int, object]]:
    """Local Dask clusters of 1 and 2 single-threaded worker processes, started on first use."""
    started: dict[int, object] = {}

    class Lazy(dict):
        def __missing__(self, workers: int) -> object:
            started[workers] = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                        dashboard_address=":0", env=worker_environment())
            return started[workers]

    yield Lazy()
    for cluster in started.values():
        cluster.close()


def make_backend(name: str, clusters: dict[int, object]) -> Backend:
    if name == "in-process":
        return LocalBackend()
    workers = int(name.removeprefix("dask-"))
    return DaskBackend(scheduler=clusters[workers].scheduler_address)  # type: ignore[attr-defined]


@pytest.mark.parametrize("chunk_size", [50, 77, 300])
@pytest.mark.parametrize("backend", ["in-process", "dask-1", "dask-2"])
def test_tables_are_byte_identical_across_backends_and_chunk_sizes(
        backend: str, chunk_size: int, clusters: dict[int, object], reference: dict[str, str],
        tmp_path: Path) -> None:
    outcome = run_trial(PROTOCOL, N, tmp_path / "run", SEED, backend=make_backend(backend, clusters),
                        chunk_size=chunk_size, trajectory_patients=RECORDED)
    assert digests(outcome.path) == reference
    run = read_run(outcome.path)
    assert run.patients["patient_id"].tolist() == list(range(N))
    assert set(run.patients["arm"]) == {"blinatumomab", "chemotherapy"}
    assert run.trajectories["patient_id"].nunique() == RECORDED
    assert run.manifest["backend"]["name"] == ("local" if backend == "in-process" else "dask")
    assert not (outcome.path / PARTS).exists()
    assert json.loads((outcome.path / "summary.json").read_text())["tables"]["main"]


class Interrupt(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def test_resume_computes_missing_chunks_only_and_writes_the_same_bytes(reference: dict[str, str],
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "run"
    done: list[int] = []

    def crash_after_two_chunks(patients: int) -> None:
        done.append(patients)
        if len(done) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_trial(PROTOCOL, N, out, SEED, chunk_size=50, trajectory_patients=RECORDED,
                  progress=crash_after_two_chunks)
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_run(out)
    assert len(list((out / PARTS).glob("patients-*.parquet"))) == 2

    reported: list[int] = []
    outcome = run_trial(PROTOCOL, N, out, SEED, trajectory_patients=RECORDED, resume=True,
                        progress=reported.append)  # chunk size from the interrupted run's settings
    assert outcome.computed_chunks == 4
    assert reported == [100, 50, 50, 50, 50]
    assert outcome.manifest["resumed"] is True
    assert digests(out) == reference

    again = run_trial(PROTOCOL, N, out, SEED, trajectory_patients=RECORDED, resume=True)
    assert again.computed_chunks == 0
    assert digests(out) == reference


def crash(_: int) -> None:
    raise Interrupt


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        run_trial(PROTOCOL, 60, out, SEED, chunk_size=30, progress=crash)
    with pytest.raises(RunSettingsError, match=r"settings\.json.*seed was 3, now 4"):
        run_trial(PROTOCOL, 60, out, SEED + 1, resume=True)
    with pytest.raises(RunSettingsError, match="chunk_size was 30, now 20"):
        run_trial(PROTOCOL, 60, out, SEED, chunk_size=20, resume=True)

    result = runner.invoke(app, ["run", "eliana", "-n", "60", "-s", str(SEED), "-o", str(out), "--resume"])
    assert result.exit_code == 2
    text = "".join(result.output.split())
    assert "settings.json" in text and "protocolwas'aall1331',now'eliana'" in text
    assert "Traceback" not in result.output

    result = runner.invoke(app, ["run", PROTOCOL, "-n", "60", "-o", str(tmp_path / "new"), "--resume"])
    assert result.exit_code == 2 and "nothingtoresume" in "".join(result.output.split())


def test_killed_worker_run_completes_with_every_patient_once(reference: dict[str, str], tmp_path: Path) -> None:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  env=worker_environment()) as cluster:
        backend = DaskBackend(scheduler=cluster.scheduler_address, in_flight=6)
        before = set(backend.client.run(os.getpid).values())
        killed: list[int] = []

        def kill_a_worker(_: int) -> None:
            """Kill a worker that holds chunks in progress, so they must be recomputed elsewhere."""
            if not killed:
                busy = [address for address, keys in backend.client.processing().items() if keys]
                assert busy, "no worker held a chunk when the first chunk completed"
                killed.append(backend.client.run(os.getpid, workers=busy[:1])[busy[0]])
                os.kill(killed[0], signal.SIGKILL)

        outcome = run_trial(PROTOCOL, N, tmp_path / "run", SEED, backend=backend, chunk_size=25,
                            trajectory_patients=RECORDED, progress=kill_a_worker)
        with distributed.Client(cluster) as client:
            after = set(client.run(os.getpid).values())
    assert killed and killed[0] in before and killed[0] not in after
    assert len(after) == 2  # the nanny started a new worker in place of the killed one
    patients = pd.read_parquet(outcome.path / "patients.parquet")
    assert patients["patient_id"].tolist() == list(range(N))  # every patient exactly once
    assert digests(outcome.path) == reference


def test_cli_local_cluster_writes_the_same_bytes_with_one_thread_per_worker(reference: dict[str, str],
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", PROTOCOL, "-n", str(N), "-s", str(SEED), "-o", str(out), "--workers", "2",
                                 "--chunk-size", "77", "--trajectories", str(RECORDED), "--no-report"])
    assert result.exit_code == 0, result.output
    assert digests(out) == reference
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == {"name": "dask", "workers": 2, "threads_per_worker": 1}

    with DaskBackend(workers=1) as backend:
        def threads() -> tuple[int, str | None, str | None]:
            import numba

            return numba.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")

        assert list(backend.client.run(threads).values()) == [(1, "1", "1")]


_NUMBA_FIRST = """
import numba  # before Dask applies the worker environment in the spawned worker, as `leukosim run` imports it

from leukosim.backends import DaskBackend


class Threads:
    def __call__(self, first: int, stop: int) -> int:
        return numba.get_num_threads()


if __name__ == "__main__":
    with DaskBackend(workers=1) as backend:
        print(sorted(backend.map(Threads(), [(0, 1), (1, 2)])))
"""


def test_chunks_run_on_one_thread_when_the_main_module_imported_numba_first(tmp_path: Path) -> None:
    """A spawned worker imports the main module before it sets its environment; the ``leukosim`` command's main
    module imports numba, whose default is then every core (the chunks ran on 2 threads per 1-thread worker)."""
    script = tmp_path / "main.py"
    script.write_text(_NUMBA_FIRST)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1]"


def test_cli_rejects_workers_with_scheduler(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", PROTOCOL, "-n", "10", "-o", str(tmp_path / "run"), "--workers", "2",
                                 "--scheduler", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2
    assert "--scheduleruses" in "".join(result.output.split()) and "Traceback" not in result.output
    with pytest.raises(ValueError, match="exactly one of"):
        DaskBackend(workers=2, scheduler="tcp://127.0.0.1:8786")


def test_canonical_file_does_not_depend_on_how_rows_are_split(tmp_path: Path) -> None:
    """A piece where a column is all missing (typed null by Arrow): the file is the one written from the whole
    table."""
    whole = pd.DataFrame({"patient_id": range(6), "phenotype": [None, None, None, "CD19-", None, "CD19+"],
                          "day": [1.0, None, 3.0, 4.0, 5.0, 6.0]})
    pieces = [whole.iloc[:3], whole.iloc[3:]]
    tables = [to_arrow(piece) for piece in pieces]
    split = write_canonical(tables, canonical_schema([t.schema for t in tables]), tmp_path / "split.parquet")
    table = to_arrow(whole)
    one = write_canonical([table], canonical_schema([table.schema]), tmp_path / "one.parquet")
    assert split.read_bytes() == one.read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(split), whole)
    # row groups cut across pieces of any size: rows 0-1, 2-3, 4-5 whether the pieces hold 3 + 3 or 1 + 5 rows
    files = []
    for cut in (3, 1):
        tables = [to_arrow(whole.iloc[:cut]), to_arrow(whole.iloc[cut:])]
        files.append(write_canonical(tables, canonical_schema([t.schema for t in tables]),
                                     tmp_path / f"groups-{cut}.parquet", row_group_rows=2))
    one = write_canonical([table], canonical_schema([table.schema]), tmp_path / "groups.parquet", row_group_rows=2)
    assert pq.ParquetFile(one).num_row_groups == 3
    assert files[0].read_bytes() == files[1].read_bytes() == one.read_bytes()
