"""What every speed figure is printed beside: the CPU's model name and the SIMD flags that decide its speed."""

from __future__ import annotations

import os
import time
from pathlib import Path

# libgomp's default wait policy keeps an OpenMP worker spinning for a while after a parallel call: timed
# right after faiss on 2 threads, our kernel lost one core for its first milliseconds (0.80 instead of 1.01
# of the probe, docs/BENCHMARKS.md). Longer than that spin, short next to a round.
OPENMP_SPIN_SECONDS = 0.05


def _cpuinfo_field(name: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return ""


def cpu_model() -> str:
    """The model name, with family and model numbers: a VM often shows only "AMD EPYC" (family 25 is Zen 3/4, 26 Zen 5)."""
    name = _cpuinfo_field("model name") or "unknown CPU"
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model\t")
    return f"{name} (family {family}, model {model})" if family else name


def simd_flags() -> str:
    """The SIMD flags that decide popcount and matmul speed (avx2, avx512f, avx512_vpopcntdq), from /proc/cpuinfo."""
    flags = set(_cpuinfo_field("flags").split())
    wanted = ("avx2", "avx512f", "avx512_vpopcntdq")
    return " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in wanted)


def machine_line() -> str:
    """One line: CPU model, SIMD flags and core count."""
    return f"CPU: {cpu_model()}; SIMD: {simd_flags()}; cores {os.cpu_count()}"


def let_openmp_idle() -> None:
    """Wait out faiss's spinning OpenMP workers (`OPENMP_SPIN_SECONDS`) so they take no core from the next timing."""
    time.sleep(OPENMP_SPIN_SECONDS)
