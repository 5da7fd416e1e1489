"""Process-wide settings that make PyTorch's CPU work faster: the C allocator and
OpenMP's waiting threads. Standard library only; the command line applies them, a
library user may call them (before importing torch, for ``spin_openmp_threads``).

Measured on a 2-core AMD EPYC (Zen 3), torch 2.13.0, a ``tiny`` pre-training step
(bench/RESULTS.md, "The demo", session 6): 8.5-9.1 steps/s as shipped before,
10.1 with ``tune_allocator``, 12.4 with both.
"""

from __future__ import annotations

import ctypes
import os
import sys

from bertforge import OMP_POLICY_FROM_USER

# mallopt(3) parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20
SPIN_COUNT = "10000"


def tune_allocator() -> bool:
    """Keep freed memory for reuse instead of handing it back to the kernel.

    glibc serves blocks over 128 KiB-32 MiB with a fresh ``mmap`` and returns them on
    ``free``, so every training step faults in and zeroes its activations and logits
    again: on 2 cores half of the CPU time went to the kernel (``sys``). Raising the
    mmap and trim thresholds makes the heap keep and reuse those pages (the process then
    holds on to its peak memory). Returns False where the C library has no ``mallopt``
    (macOS, musl) or refuses a value; environment settings (MALLOC_*_) are left alone.
    """
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return False
    try:  # the C library is already loaded: no search (find_library runs ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD)))


def spin_openmp_threads() -> bool:
    """Let OpenMP threads spin briefly (``GOMP_SPINCOUNT`` 10,000) between operations
    instead of sleeping at once, for a process that is the machine's main job.

    bertforge makes threads sleep by default (``OMP_WAIT_POLICY=PASSIVE``), which is
    right when other processes share the cores (two spinning training processes on 2
    cores each ran at 57% of the speed of two sleeping ones). Alone on the cores, the
    wake-ups cost a small model a fifth of its step. libgomp reads the policy when torch
    loads, so this works only before ``import torch`` and only when the user did not set
    ``OMP_WAIT_POLICY`` themselves; returns whether it took effect.
    """
    if "torch" in sys.modules or OMP_POLICY_FROM_USER:
        return False
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    return True
