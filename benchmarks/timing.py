"""Timers and memory probes used inside one worker process."""

from __future__ import annotations

import ctypes
import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def clock(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of fn (outputs awaited): `repeats` samples after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(time.perf_counter() - t0)
    return samples


def steady_steps(
    step: Callable, state: Any, batch: tuple, chunks: int, chunk_s: float
) -> list[float]:
    """Seconds per step of a jitted step fed its own state, one sample per chunk of ~chunk_s."""
    for _ in range(3):
        state, loss = step(state, batch)
    jax.block_until_ready((state, loss))
    t0 = time.perf_counter()
    state, loss = step(state, batch)
    jax.block_until_ready((state, loss))
    n = max(1, math.ceil(chunk_s / max(time.perf_counter() - t0, 1e-7)))
    samples = []
    for _ in range(chunks):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(n):
            state, loss = step(state, batch)
        jax.block_until_ready((state, loss))
        samples.append((time.perf_counter() - t0) / n)
    return samples


def median(xs: list[float]) -> float:
    """The median of a non-empty list."""
    return statistics.median(xs)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def rss() -> int:
    """Resident memory of this process now, in bytes."""
    return _status_bytes("VmRSS")


def release_free_memory() -> None:
    """Hand free heap memory back to the kernel, so the next allocations show in the RSS."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> None:
    """Reset the kernel's resident-memory high-water mark to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    """Highest resident memory since the last reset_peak_rss, in bytes."""
    return _status_bytes("VmHWM")


def keep_freed_memory(pretouch_bytes: int) -> None:
    """Make freed memory stay in this process, and touch `pretouch_bytes` of it now.

    First-touch page faults cost ~2 s/GB on these VMs; glibc would hand each
    big buffer back to the kernel when freed (mmap), so every call would pay
    them again. With mmap off and trimming off, later allocations reuse
    memory that is already resident.
    """
    import numpy as np

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    block = np.ones(pretouch_bytes, np.uint8)
    del block
