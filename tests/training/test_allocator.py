"""`keep_freed_memory`: a large buffer freed and made again comes back without page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hf_cmah.training.allocator import keep_freed_memory

# 40 MiB float buffers written in full, made and freed 20 times: the faults counted after the first.
CYCLES = textwrap.dedent(
    """
    import resource, sys, torch
    from hf_cmah.training.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.empty(10 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(10 * 2**20).fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_are_reused_without_page_faults():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 20 * 10_000 * 0.9  # glibc's default: every 40 MiB buffer is a fresh mmap, ~10,240 pages each
    assert kept < default / 5  # measured: 204,820 faults against 10,240 (one buffer's pages, once)


def test_keep_freed_memory_reports_whether_it_applied():
    assert keep_freed_memory() is sys.platform.startswith("linux")
