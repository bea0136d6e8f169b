"""Which inner loop the exact kernel runs on this CPU: decided once at import, overridable for tests and benchmarks.

- ``avx512``: 512-bit vectors and ``vpopcntq``, on CPUs with AVX-512F and AVX-512 VPOPCNTDQ
  (Intel Ice Lake server and later, AMD Zen 4 and later).
- ``avx2``: 256-bit vectors and the ``vpshufb`` nibble-table popcount.
- ``scalar``: the ``popcnt`` instruction, one code at a time (CPUs without AVX2).

``HF_CMAH_SEARCH_KERNEL=scalar|avx2|avx512`` forces one (``auto``, the default, picks the
best the CPU has). The flags are LLVM's view of the host, the same ones numba compiles for.
A forced variant the CPU lacks still runs and still gives exact results: LLVM lowers its
vectors to the instructions the CPU has (so ``avx512`` on an AVX2 CPU is two AVX2 halves),
which is how every variant is tested on every machine.
"""

from __future__ import annotations

import functools
import os

import numba
from numba.core import codegen

ENVIRONMENT_VARIABLE = "HF_CMAH_SEARCH_KERNEL"
# Register bits of each variant's loop, which `hf_cmah.index.popcount.count_below` takes; 0 is the scalar loop.
REGISTER_BITS = {"scalar": 0, "avx2": 256, "avx512": 512}
# The LLVM features each variant needs to run natively.
REQUIRED_FEATURES = {"scalar": {"popcnt"}, "avx2": {"avx2"}, "avx512": {"avx512f", "avx512vpopcntdq"}}


@functools.cache
def cpu_features() -> frozenset[str]:
    """The host's LLVM CPU features that numba compiles for (``NUMBA_CPU_FEATURES``, ``NUMBA_ENABLE_AVX`` respected)."""
    flattened = numba.config.CPU_FEATURES or codegen.get_host_cpu_features()
    return frozenset(feature[1:] for feature in flattened.split(",") if feature.startswith("+"))


def native_variants(features: frozenset[str] | None = None) -> list[str]:
    """The variants this CPU runs natively, slowest first."""
    features = cpu_features() if features is None else features
    return [name for name, needed in REQUIRED_FEATURES.items() if needed <= features]


def choose_variant(requested: str | None = None, features: frozenset[str] | None = None) -> str:
    """``requested`` (or the environment variable's value) if it names a variant, else the fastest native one."""
    requested = (requested if requested is not None else os.environ.get(ENVIRONMENT_VARIABLE, "auto")).strip().lower()
    if requested in REGISTER_BITS:
        return requested
    if requested not in ("", "auto"):
        choices = ", ".join(["auto", *REGISTER_BITS])
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={requested!r}: expected one of {choices}")
    native = native_variants(features)
    return native[-1] if native else "avx2"  # no popcnt at all (not x86): LLVM's portable vectors


def describe(variant: str) -> str:
    """One line for `hf-cmah index info` and the benchmarks: the variant, why, and whether it runs natively."""
    forced = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() not in ("", "auto")
    how = f"forced by {ENVIRONMENT_VARIABLE}" if forced else "chosen from the CPU's flags"
    missing = sorted(REQUIRED_FEATURES[variant] - cpu_features())
    native = "native" if not missing else f"emulated: the CPU lacks {', '.join(missing)}"
    return f"search kernel {variant} ({how}; {native}; CPU runs {', '.join(native_variants()) or 'none'} natively)"


KERNEL = choose_variant()
