"""Where chunks of virtual patients are computed: in this process or on a Dask cluster, behind one interface.

A :class:`ChunkTask` (protocol, parameter set, seed, recorded patients) turns a patient-id range into
:class:`ChunkParts`, the chunk's patients, events and trajectories as Parquet bytes. A :class:`Backend` maps a
task over ranges and yields the finished chunks as they complete, in any order; the orchestrator
(:func:`leukosim.runner.run_trial`) writes them. Results are keyed by patient id, so the backend, the number
of workers and the order of completion cannot change them.

* :class:`LocalBackend`: the compiled engine in this process, on every core (numba threads), chunk after chunk.
* :class:`DaskBackend`: ``DaskBackend(workers=K)`` starts a local cluster of K single-threaded worker
  processes; ``DaskBackend(scheduler=ADDRESS)`` uses an existing cluster. A lost worker's chunks are computed
  again elsewhere (Dask reschedules them; ``retries`` covers failed tasks).

Nested parallelism: in the local cluster's workers, numba and the BLAS/OpenMP pools get one thread each
(:func:`worker_environment`) unless the user set the variables. On any Dask worker a process computes one
chunk at a time, with as many numba threads as the worker has threads unless ``NUMBA_NUM_THREADS`` is set.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from .io.parquet import encode
from .model.registry import ParameterSet
from .protocol.schema import Protocol

__all__ = ["ChunkTask", "ChunkParts", "Backend", "LocalBackend", "DaskBackend", "worker_environment",
           "THREAD_VARIABLES"]

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ChunkParts:
    """A computed chunk: patient ids ``first`` to ``stop - 1`` and its three tables as Parquet bytes."""

    first: int
    stop: int
    patients: bytes
    events: bytes
    trajectories: bytes


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to compute any chunk of a run (picklable)."""

    protocol: Protocol
    parameters: ParameterSet
    seed: int
    trajectory_patients: int

    def __call__(self, first: int, stop: int) -> ChunkParts:
        """Simulate patient ids ``first`` to ``stop - 1``."""
        from .trial import simulate_chunk

        ids = np.arange(first, stop, dtype=np.int64)
        patients, events, trajectories = simulate_chunk(self.protocol, self.parameters, self.seed, ids,
                                                        self.trajectory_patients)
        return ChunkParts(first, stop, encode(patients), encode(events), encode(trajectories))

    def warm_up(self) -> float:
        """Compile the engine in this process (:func:`leukosim.trial.warm_up_engine`); seconds taken."""
        from .trial import warm_up_engine

        return warm_up_engine(self.protocol, self.parameters, self.seed)


class Backend(ABC):
    """Computes chunks; use as a context manager (``with backend: ...``) around :meth:`map`."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release what the backend started (no-op by default)."""

    def prepare(self, task: ChunkTask) -> float | None:
        """Work done in this process before the timed :meth:`map`: seconds it took, or None when the backend
        prepares nothing here (Dask workers compile the engine in their own processes)."""
        return None

    @abstractmethod
    def map(self, task: ChunkTask, ranges: Sequence[tuple[int, int]]) -> Iterator[ChunkParts]:
        """Compute ``task`` on each ``(first, stop)`` range; yield each chunk once, as it completes."""

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """What computed the run, for the manifest."""


class LocalBackend(Backend):
    """The compiled engine in this process: one chunk at a time, patients in parallel on every core."""

    def prepare(self, task: ChunkTask) -> float:
        return task.warm_up()

    def map(self, task: ChunkTask, ranges: Sequence[tuple[int, int]]) -> Iterator[ChunkParts]:
        for first, stop in ranges:
            yield task(first, stop)

    def describe(self) -> dict[str, object]:
        import numba

        return {"name": "local", "threads": numba.get_num_threads()}


def worker_environment() -> dict[str, str]:
    """Thread-count variables for worker processes: 1 for numba, OpenMP, MKL and OpenBLAS, except where the
    user set them (then the user's value)."""
    return {name: os.environ.get(name, "1") for name in THREAD_VARIABLES}


_ENGINE_LOCK = threading.Lock()


def _on_worker(task: ChunkTask, first: int, stop: int) -> ChunkParts:
    """Run one chunk on a Dask worker: one chunk at a time per process (the engine's threads are the unit of
    parallelism), numba threads = NUMBA_NUM_THREADS if set, otherwise the worker's threads. Set for every chunk:
    numba takes its default from the environment when first imported, which in a spawned worker process can be
    before Dask applies the worker's environment (the ``leukosim`` command's main module imports numba)."""
    import numba
    from distributed import get_worker

    threads = int(os.environ.get("NUMBA_NUM_THREADS", get_worker().state.nthreads))
    with _ENGINE_LOCK:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        return task(first, stop)


class DaskBackend(Backend):
    """Chunks on Dask distributed: a local cluster of ``workers`` processes, or the cluster at ``scheduler``.

    At most ``in_flight`` chunks (default: twice the workers' threads) are submitted at a time, so memory
    stays bounded whatever the number of chunks; a failed task is retried ``retries`` times."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, in_flight: int | None = None,
                 retries: int = 3) -> None:
        if (workers is None) == (scheduler is None):
            raise ValueError("DaskBackend needs exactly one of workers=K (local cluster) or scheduler=ADDRESS")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.workers, self.scheduler, self.retries = workers, scheduler, retries
        self._in_flight = in_flight
        self._cluster = None
        self._client = None

    @property
    def client(self):  # noqa: ANN201 (distributed.Client, imported lazily)
        """The Dask client (connects or starts the local cluster on first use)."""
        if self._client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise ImportError("the Dask backend needs Dask distributed: pip install 'leukosim[dask]'") from None

            if self.scheduler is not None:
                try:
                    self._client = Client(self.scheduler, timeout="20s")
                except OSError as error:
                    raise ConnectionError(f"cannot reach the Dask scheduler at {self.scheduler}: {error}") from None
            else:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=":0", silence_logs=logging.ERROR,
                                             env=worker_environment())
                self._client = Client(self._cluster)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def map(self, task: ChunkTask, ranges: Sequence[tuple[int, int]]) -> Iterator[ChunkParts]:
        from distributed import as_completed

        client = self.client
        threads = sum(client.nthreads().values()) or 1
        window = self._in_flight or 2 * threads
        pending = iter(ranges)
        run = uuid.uuid4().hex[:12]

        def submit(first: int, stop: int):  # noqa: ANN202 (distributed.Future)
            return client.submit(_on_worker, task, first, stop, retries=self.retries,
                                 key=f"leukosim-chunk-{run}-{first}-{stop}")

        running = as_completed([submit(*r) for _, r in zip(range(window), pending)])
        for future in running:
            parts: ChunkParts = future.result()
            future.release()
            following = next(pending, None)
            if following is not None:
                running.add(submit(*following))
            yield parts

    def describe(self) -> dict[str, object]:
        if self.scheduler is not None:
            return {"name": "dask", "scheduler": self.scheduler}
        return {"name": "dask", "workers": self.workers, "threads_per_worker": 1}
