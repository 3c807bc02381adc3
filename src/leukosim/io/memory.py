"""Freed memory handed back to the operating system between the stages of a large run."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

import pyarrow as pa

__all__ = ["release_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on other platforms and C libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_memory() -> None:
    """Return freed memory to the operating system: the unused pages of Arrow's memory pool and, with glibc, the
    free pages of the C heap. Otherwise a process keeps what it freed (glibc serves large arrays from its heap
    once a large block was freed), and each stage of a million-patient run starts from the previous one's
    high-water mark."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
