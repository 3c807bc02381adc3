"""Counter-based random streams keyed by (seed, patient index, stream number).

Every random number a virtual patient uses is a pure function of the run seed, the patient's index and a
stream number, so patient k is identical whatever the cohort size, chunking, backend or worker count.
The mixer is SplitMix64 (Steele, Lea & Flood 2014) applied to a combined 64-bit counter; it is vectorised
in NumPy and needs no per-patient generator object.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from ..kernel import kernel

__all__ = ["uniform", "uniforms", "standard_normals", "Stream"]

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_PATIENT_KEY = 0xD6E8FEB86659FD93
_STREAM_KEY = 0xA0761D6478BD642F
_INV_2_53 = 1.0 / 9007199254740992.0
_NAMED_BIT = 1 << 62


@numba.njit(cache=True, inline="always", error_model="numpy")
def _splitmix64(x: np.uint64) -> np.uint64:
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


@kernel
def uniform(seed: int, patient_id: int, stream: int) -> float:
    """The uniform draw in (0, 1) of one patient and stream (usable inside compiled code)."""
    key = _splitmix64(np.uint64(seed))
    x = key ^ _splitmix64(np.uint64(patient_id) * np.uint64(_PATIENT_KEY) + np.uint64(stream) * np.uint64(_STREAM_KEY))
    bits = _splitmix64(_splitmix64(x)) >> np.uint64(11)
    return (float(bits) + 0.5) * _INV_2_53


@numba.njit(cache=True, error_model="numpy")
def _uniforms(seed: int, patient_ids: np.ndarray, streams: np.ndarray) -> np.ndarray:
    out = np.empty(patient_ids.size)
    for i in range(patient_ids.size):
        out[i] = uniform(seed, patient_ids[i], streams[i])
    return out


def uniforms(seed: int, patient_ids: NDArray[np.int64], stream: int | NDArray[np.int64]) -> NDArray[np.float64]:
    """One uniform draw in the open interval (0, 1) per patient for the given stream number (one for all
    patients, or one per patient)."""
    ids = np.ascontiguousarray(patient_ids, dtype=np.int64)
    streams = np.ascontiguousarray(np.broadcast_to(np.asarray(stream, dtype=np.int64), ids.shape))
    return _uniforms(int(seed), ids, streams)


def standard_normals(seed: int, patient_ids: NDArray[np.int64], stream: int) -> NDArray[np.float64]:
    """One standard normal draw per patient (inverse CDF of :func:`uniforms`)."""
    return ndtri(uniforms(seed, patient_ids, stream))


class Stream:
    """Named stream numbers so that no two consumers share a stream.

    Each consumer reserves a block with :meth:`block`; numbers are fixed by the order of names in
    ``BLOCKS`` so adding a consumer at the end never shifts the draws of existing ones.
    """

    BLOCKS: tuple[tuple[str, int], ...] = (
        ("arm", 1),
        ("covariates", 64),
        ("extinction", 128),
        ("hazards", 32),
        ("assays", 4096),
        ("symptoms", 16),
        ("post_progression", 8),
        ("subclones", 8),
    )

    @staticmethod
    def named(key: str) -> int:
        """Stream number of a quantity known by name (e.g. ``"parameters/car_expansion_rate"``): a 62-bit BLAKE2b
        digest of ``key`` with bit 62 set, so it lies above every block and does not move when other named
        quantities (registry parameters) are added, removed or reordered."""
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return (digest & (_NAMED_BIT - 1)) | _NAMED_BIT

    @classmethod
    def block(cls, name: str) -> int:
        """First stream number of the block reserved for ``name``."""
        start = 1
        for block_name, size in cls.BLOCKS:
            if block_name == name:
                return start
            start += size
        raise KeyError(f"no random stream block named {name!r}")
