"""What every speed figure is printed beside: the CPU's model name and the SIMD flags that decide its speed."""

from __future__ import annotations

import os
from pathlib import Path


def _cpuinfo_field(name: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return ""


def cpu_model() -> str:
    return _cpuinfo_field("model name") or "unknown CPU"


def simd_flags() -> str:
    """The SIMD flags that decide popcount and matmul speed (avx2, avx512f, avx512_vpopcntdq), from /proc/cpuinfo."""
    flags = set(_cpuinfo_field("flags").split())
    wanted = ("avx2", "avx512f", "avx512_vpopcntdq")
    return " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in wanted)


def machine_line() -> str:
    """One line: CPU model, SIMD flags and core count."""
    return f"CPU: {cpu_model()}; SIMD: {simd_flags()}; cores {os.cpu_count()}"
