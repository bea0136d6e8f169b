"""Data pipeline throughput on this machine: meshes/s (load + normalise + sample), views/s (Blender), and
the wall time of the procedural quickstart build.

    .venv/bin/python benchmarks/bench_data.py                      # print a Markdown table
    .venv/bin/python benchmarks/bench_data.py --write docs/BENCHMARKS.md

Meshes come from ``../shared/data/psb_v1_mini`` (unpacked into a temporary cache). Render
timings include Blender's start-up, once per batch, as a real build pays it. Every stage
runs in a fresh temporary ``HF_CMAH_CACHE``, so nothing is served from an earlier run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SECTION = "## Data (benchmarks/bench_data.py)"


def bench_load_sample(limit: int | None, num_points: int) -> dict:
    """Load + normalise + sample every PSB mini mesh (or the first ``limit``): meshes/s and failures."""
    from hf_cmah.data import collect_source
    from hf_cmah.errors import MeshLoadError
    from hf_cmah.geometry import load_mesh, normalize_mesh, sample_points

    records = collect_source("psb", SHARED / "psb_v1_mini").records[:limit]
    failures = []
    started = time.perf_counter()
    for record in records:
        try:
            sample_points(normalize_mesh(load_mesh(record.mesh_path)), num_points, seed=0)
        except MeshLoadError as error:
            failures.append(str(error))
    seconds = time.perf_counter() - started
    return {"meshes": len(records), "seconds": seconds, "per_second": len(records) / seconds, "failures": failures}


def bench_render(engine: str, meshes: int, views: int, resolution: int) -> dict:
    """Render ``meshes`` PSB meshes × ``views`` in one Blender process: views/s including start-up."""
    from hf_cmah.data import collect_source
    from hf_cmah.geometry import load_mesh, normalize_mesh
    from hf_cmah.render import RenderItem, RenderSettings, render_batches

    settings = RenderSettings(engine=engine, resolution=resolution, num_views=views)
    records = collect_source("psb", SHARED / "psb_v1_mini").records[:meshes]
    with tempfile.TemporaryDirectory() as workdir:
        items = []
        for record in records:
            mesh = normalize_mesh(load_mesh(record.mesh_path))
            path = Path(workdir) / f"{record.shape_id}.npz"
            np.savez(path, vertices=mesh.vertices.astype(np.float32), faces=mesh.faces.astype(np.int32))
            items.append(RenderItem(record.shape_id, path, Path(workdir) / record.shape_id, settings.views_for("x")))
        started = time.perf_counter()
        outcome = render_batches(items, settings, jobs=1)
        seconds = time.perf_counter() - started
    rendered = sum(error is None for error in outcome.values()) * views
    return {"engine": engine, "views": rendered, "seconds": seconds, "per_second": rendered / seconds}


def bench_procedural(per_category: int, views: int, resolution: int, engine: str) -> dict:
    """The quickstart build: the procedural library, points + renders (default render jobs), written as Parquet."""
    from hf_cmah.data import BuildSettings, build_to_folder, collect_source
    from hf_cmah.render import RenderSettings
    from hf_cmah.render.launcher import default_render_jobs

    render = RenderSettings(engine=engine, resolution=resolution, num_views=views)
    settings = BuildSettings(num_points=1024, render=render, progress=False)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        source = collect_source("procedural", None, per_category=per_category)
        _, result = build_to_folder(source, settings, out=Path(workdir) / "procedural")
        seconds = time.perf_counter() - started
    rows = sum(len(table) for table in result.dataset.values())
    jobs = default_render_jobs(render)
    return {"shapes": len(source.records), "rows": rows, "seconds": seconds, "stages": result.seconds, "jobs": jobs}


def report(args: argparse.Namespace) -> str:
    load = bench_load_sample(args.limit, args.points)
    renders = [bench_render(engine, args.render_meshes, 4, 224) for engine in ("workbench", "cycles")]
    quick = bench_procedural(args.per_category, args.views, args.resolution, args.engine)
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in quick["stages"].items())
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other work "
        f"(load average at start {os.getloadavg()[0]:.1f}); `{' '.join(args.argv)}`.",
        "",
        "| what | amount | wall time | rate |",
        "|---|---|---|---|",
        f"| PSB mini load + normalise + sample {args.points} pts | {load['meshes']} meshes, "
        f"{len(load['failures'])} failed | {load['seconds']:.1f} s | {load['per_second']:.1f} meshes/s |",
    ]
    for render in renders:
        lines.append(
            f"| render 224 px, {render['engine']} (one Blender process, start-up included) | {render['views']} views "
            f"| {render['seconds']:.1f} s | {render['per_second']:.2f} views/s |"
        )
    lines.append(
        f"| procedural quickstart build ({quick['shapes']} shapes × {args.views} views, {args.engine} "
        f"{args.resolution} px, 1024 pts, {quick['jobs']} Blender processes) | {quick['rows']} rows | {quick['seconds']:.0f} s ({stages}) | |"
    )
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str) -> None:
    """Replace only the Data section of BENCHMARKS.md (up to the next ``## `` heading)."""
    text = path.read_text()
    pattern = re.compile(re.escape(SECTION) + r"\n.*?(?=\n## |\Z)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no '{SECTION}' heading")
    path.write_text(pattern.sub(lambda _: f"{SECTION}\n\n{body}", text, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="PSB meshes for load+sample (default: all 1,284)")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--render-meshes", type=int, default=10)
    parser.add_argument("--per-category", type=int, default=20)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--engine", default="workbench")
    parser.add_argument("--write", type=Path, default=None, help="update this BENCHMARKS.md's Data section")
    args = parser.parse_args()
    args.argv = ["benchmarks/bench_data.py", *sys.argv[1:]]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_CMAH_CACHE"] = cache
        body = report(args)
    print(body)
    if args.write:
        write_section(args.write, body)


if __name__ == "__main__":
    main()
