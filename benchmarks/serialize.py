"""Workload 6: to_bytes / from_bytes of a 256 MB parameter tree, throughput and peak memory.

The 'raw' implementation is the copy floor: one memcpy of every leaf into a
preallocated buffer, and one copy out of it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from benchmarks.impls import Impl
from benchmarks.workloads import Unavailable

MB = 2**20


def make_tree(layers: int = 64, width: int = 1024) -> dict:
    """A linen-style params tree of `layers` Dense layers of width x width float32."""
    rng = np.random.default_rng(6)
    tree = {}
    for i in range(layers):
        kernel = rng.standard_normal((width, width), dtype=np.float32)
        tree[f"Dense_{i}"] = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros((width,))}
    return {"params": tree}


def raw_to_bytes(tree: Any) -> np.ndarray:
    """Every leaf's bytes copied once, back to back, into one buffer."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    out = np.empty(sum(x.nbytes for x in leaves), np.uint8)
    offset = 0
    for x in leaves:
        out[offset : offset + x.nbytes] = x.reshape(-1).view(np.uint8)
        offset += x.nbytes
    return out


def raw_from_bytes(template: Any, data: np.ndarray) -> Any:
    """The leaves of `template` copied out of a raw_to_bytes buffer."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    out, offset = [], 0
    for x in leaves:
        n = x.size * x.dtype.itemsize
        out.append(data[offset : offset + n].view(x.dtype).reshape(x.shape).copy())
        offset += n
    return jax.tree_util.tree_unflatten(treedef, out)


def codec(impl: Impl) -> tuple[Callable, Callable]:
    """The (to_bytes, from_bytes) pair of an implementation."""
    if impl.name == "raw":
        return raw_to_bytes, raw_from_bytes
    if impl.serialization is None:
        raise Unavailable(f"{impl.name} has no serialization module yet")
    return impl.serialization.to_bytes, impl.serialization.from_bytes


def _cold_call(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """fn's result, its seconds, and how far resident memory rose during the call."""
    gc.collect()
    timing.release_free_memory()
    timing.reset_peak_rss()
    base = timing.rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, timing.peak_rss() - base


def measure(impl: Impl, repeats: int, layers: int = 64, width: int = 1024) -> dict[str, float]:
    """Throughput (MB/s, MB = 2**20 bytes) and extra peak memory (x tree size) of one codec.

    'cold' calls run with the default allocator, which hands big freed buffers
    back to the kernel, so every call pays first-touch page faults for the
    memory it allocates (what a training script sees); they also give the
    peak memory. 'warm' calls reuse memory that is already resident, which
    isolates the codec's own work.
    """
    to_bytes, from_bytes = codec(impl)
    small = make_tree(2, 8)
    from_bytes(small, to_bytes(small))  # import and first-call costs stay out of the numbers
    tree = make_tree(layers, width)
    size = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(tree))
    leaves = jax.tree_util.tree_leaves(tree)

    cold_to, cold_from, to_extra, from_extra = [], [], [], []
    for _ in range(repeats):
        data = None
        data, seconds, extra = _cold_call(lambda: to_bytes(tree))
        cold_to.append(seconds)
        to_extra.append(extra)
    for _ in range(repeats):
        restored, seconds, extra = _cold_call(lambda: from_bytes(tree, data))
        cold_from.append(seconds)
        from_extra.append(extra)
        for a, b in zip(leaves, jax.tree_util.tree_leaves(restored)):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise AssertionError(
                    f"{impl.name}: from_bytes(to_bytes(tree)) differs from the tree"
                )
        del restored

    timing.keep_freed_memory(4 * size)
    warm_to = timing.clock(lambda: to_bytes(tree), repeats, warmup=1)
    warm_from = timing.clock(lambda: from_bytes(tree, data), repeats, warmup=1)
    mb = size / MB
    return {
        "tree_MB": mb,
        "to_bytes_MBps": mb / timing.median(warm_to),
        "from_bytes_MBps": mb / timing.median(warm_from),
        "to_bytes_cold_MBps": mb / timing.median(cold_to),
        "from_bytes_cold_MBps": mb / timing.median(cold_from),
        "to_bytes_peak_x": max(to_extra) / size,
        "from_bytes_peak_x": max(from_extra) / size,
        "bytes_x": len(memoryview(data).cast("B")) / size,
    }
