"""benchmarks/bench_search.py runs end to end at toy sizes and finds every kernel result exact."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_search.py"


def test_every_section_runs_and_every_exact_row_matches_faiss_and_numpy():
    arguments = "--sizes 3000 --bits 32 128 --batches 1 7 --k 3 --threads 1 --repeats 1 --numpy-queries 2"
    arguments += " --approximate 20000 --approximate-codes clustered --approximate-configs ivf4 mih4x0"
    arguments += " --shape-index 5000 --encoding 4"
    run = subprocess.run([sys.executable, SCRIPT, *arguments.split()], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "SIMD: avx2=" in lines[0]
    assert lines[1].startswith("search kernel ")
    exact_rows = [line for line in lines if line.startswith("| 3,000 |")]
    assert len(exact_rows) == 2 * 2 and all(row.endswith("| yes |") for row in exact_rows), run.stdout
    approximate_rows = [line for line in lines if line.startswith("| clustered |")]
    assert [row.split("|")[2].strip() for row in approximate_rows] == ["ivf4", "mih4x0"]
    assert all(0.0 <= float(row.split("|")[-2]) <= 1.0 for row in approximate_rows)
    shape_index_row = next(line for line in lines if line.startswith("| 5,000 |"))
    kernel_ms, search_ms = (float(cell) for cell in shape_index_row.split("|")[2:4])
    assert kernel_ms > 0 and search_ms > 0
    assert any(line.startswith("Encoding (mesh files → codes") for line in lines)
