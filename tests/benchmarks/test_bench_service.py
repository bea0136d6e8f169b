"""benchmarks/bench_service.py runs end to end on the sample library at a toy request count."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import bench_service


def test_a_row_per_concurrency_level_and_finite_ratios(sample_library, capsys):
    arguments = ["--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir)]
    arguments += ["--image", str(sample_library.query_image)]
    arguments += ["--shape", str(sample_library.library_dir / f"{sample_library.query_id}.obj")]
    rows = bench_service.main([*arguments, "--requests", "6", "--concurrency", "1", "2", "--warm-up", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CPU: ") and "SIMD: avx2=" in lines[0]
    assert "--workers 2, torch threads" in lines[1]
    for kind in ("image", "shape"):
        table = [line.split(" | ") for line in lines if line.startswith(f"| {kind} |")]
        assert [(cells[1], cells[2]) for cells in table] == [("direct", "1"), ("service", "1"), ("service", "2")]
        service = [row for row in rows if row["query"] == kind and row["mode"] == "service"]
        assert [row["concurrency"] for row in service] == [1, 2]
        for row in service:
            assert all(math.isfinite(row[name]) and row[name] > 0 for name in ("p50_ratio", "rate_ratio"))
            assert row["p95_ms"] >= row["p50_ms"] > 0
