"""Keep freed tensor memory in the process on glibc, so a CPU training step does not page-fault.

glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and
gives it back with ``munmap`` when freed. A ``cmah-tiny`` step at batch 32 makes and frees dozens of
16,384 × 512 float buffers (32 MiB each) in the mini-PointNet, so every step faulted in and zeroed
them anew, and matmuls writing into fresh pages ran at two thirds of their speed. Raising the
thresholds keeps that memory in the heap (docs/BENCHMARKS.md, "Training on CPU", measures the
gain); what the model computes does not change. It is what preloading jemalloc or tcmalloc does
for PyTorch on CPU, without a preload.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
KEEP_BYTES = 1 << 30  # buffers up to 1 GiB come from the heap and stay there once freed
INT_MAX = 2**31 - 1  # mallopt's value is a C int


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; False (and nothing changed) where the C library has no ``mallopt``."""
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:  # macOS, Windows
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))
