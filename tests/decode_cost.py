"""What decoding an input costs, counted rather than timed.

``steps`` counts every line of Python executed and every C function called while a decoder
runs; ``peak`` is the most memory it held at once. Both depend only on the input and the
code, never on how fast or busy the machine is, so a test can bound them exactly: a
reader that hangs, loops or allocates by what a hostile header claims blows through a
bound linear in the input's size, on any machine. (Time inside one C call, such as a
copy, is covered by the memory bound: such calls touch at most the bytes they allocate
or were given.)
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

# Per input byte, and fixed. A real tree costs about 3 steps per byte of its msgpack
# (an array: a few dozen steps, whatever its size); the costliest input, a run of one-byte
# empty strings, 23 steps per byte. An error adds its message, a few hundred steps.
STEPS_PER_BYTE = 40
STEPS_FIXED = 4000
# Array data is copied once; the worst input, a run of one-byte empty maps, builds a
# 64-byte dict per byte (WORST_PEAK_PER_BYTE); the fuzzed and hostile inputs stay far
# below that, within PEAK_PER_BYTE. The fixed part covers the call stack: input nested
# to the reader's depth limit holds up to ~400 KiB of frames (arrays whose shape is an
# array, 6 frames a level), whatever the input's length.
PEAK_PER_BYTE = 8
PEAK_FIXED = 512 * 1024
WORST_PEAK_PER_BYTE = 96


def cost(fn: Callable[[Any], Any], data: bytes, allowed: type) -> tuple[int, int]:
    """``(steps, peak bytes)`` of ``fn(data)``, which must return or raise ``allowed``."""
    tracemalloc.start()
    try:
        _call(fn, data, allowed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    steps = 0

    def count(frame, event, arg):
        nonlocal steps
        steps += 1
        return count  # trace the lines of every frame called from here on

    def count_c_calls(frame, event, arg):
        nonlocal steps
        if event == "c_call":
            steps += 1

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(count)
    sys.setprofile(count_c_calls)
    try:
        _call(fn, data, allowed)
    finally:
        sys.settrace(old_trace)
        sys.setprofile(old_profile)
    return steps, peak


def _call(fn, data, allowed) -> None:
    try:
        fn(data)
    except allowed:
        pass


def check_bounded(fn: Callable[[Any], Any], data: bytes, allowed: type) -> None:
    """``fn(data)`` returns or raises ``allowed``, at a cost linear in ``len(data)``."""
    steps, peak = cost(fn, data, allowed)
    assert steps <= STEPS_PER_BYTE * len(data) + STEPS_FIXED, (steps, len(data))
    assert peak <= PEAK_PER_BYTE * len(data) + PEAK_FIXED, (peak, len(data))
