"""Load check of `hf-cmah serve`: concurrent clients against a local server, beside the same search in-process.

The script starts the server itself (``ServiceProcess``: 127.0.0.1, a free port) and stops it
when done. Each concurrency level sends ``--requests`` ``POST /api/v1/search`` requests from
that many client threads (one keep-alive ``httpx.Client`` each); latency is client-side, from
the request's first byte to the parsed JSON. The direct rows do the same work in this process,
single-threaded: decode the same bytes with ``hf_cmah.images.load_image`` (shapes: the same file
through ``load_points``) and call ``ShapeIndex.search(..., with_metadata=True)`` on the same
model and index, with the server's torch thread count. Every hit list is checked against the
direct one before it is counted. Ratios are service ÷ direct from the same run: read those, not
the absolute figures, and compare the CPU SIMD flags printed beside them.

    python benchmarks/bench_service.py                   # the quickstart's model, index and query image
    python benchmarks/bench_service.py --sample /tmp/bench-sample --requests 200 --concurrency 1 4 16
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from machine import cpu_model, simd_flags

from hf_cmah.quickstart import quickstart_outputs
from hf_cmah.service.process import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[1]


def summary(latencies_s: list[float], wall_s: float) -> dict:
    """p50 / p95 in ms and the rate over the whole wall time of the level."""
    latencies_ms = np.asarray(latencies_s) * 1e3
    return {
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p95_ms": float(np.percentile(latencies_ms, 95)),
        "rate": len(latencies_s) / wall_s,
    }


def bench_direct(index, kind: str, data: bytes, path: Path, k: int, requests: int, warm_up: int) -> dict:
    """``requests`` in-process searches one after another: decode (or load the points), encode, search."""
    from hf_cmah.geometry import load_points
    from hf_cmah.images import load_image

    processor = index.encoder.processor
    k = min(k, len(index))  # as search_library caps it

    def search() -> list[str]:
        if kind == "image":
            result = index.search(images=[load_image(data, "image")], k=k, with_metadata=True)
        else:
            points = load_points(path, processor.num_points, seed=processor.seed)
            result = index.search(shapes=[points], k=k, with_metadata=True)
        return result.ids[0]

    for _ in range(warm_up):
        search()
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        start = time.perf_counter()
        hits = search()
        latencies.append(time.perf_counter() - start)
    return {**summary(latencies, time.perf_counter() - started), "hits": list(hits)}


def bench_service(
    url: str, kind: str, data: bytes, filename: str, k: int, requests: int, concurrency: int, expected: list[str]
) -> dict:
    """``requests`` searches from ``concurrency`` client threads; every answer must be 200 with ``expected`` hits."""
    import httpx

    remaining = iter(range(requests))  # next() on a shared iterator is atomic under the GIL
    latencies: list[float] = []
    server_ms: list[float] = []
    failures: list[str] = []
    start_line = threading.Barrier(concurrency + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as session:
            session.get("/healthz")  # open the keep-alive connection before the clock starts
            start_line.wait()
            for _ in remaining:
                start = time.perf_counter()
                response = session.post("/api/v1/search", files={kind: (filename, data)}, data={"k": str(k)})
                body = response.json()
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {body}")
                    continue
                server_ms.append(body["latency_ms"])
                if [hit["shape_id"] for hit in body["results"]] != expected:
                    failures.append(f"hits differ from the direct search: {body['results']}")

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {requests} {kind} requests failed at concurrency {concurrency}: {failures[0]}"
        )
    return {**summary(latencies, wall_s), "server_p50_ms": float(np.median(server_ms))}


def resolve_inputs(args) -> dict:
    """Model, index, query image and (optional) query shape: from the flags, the sample library or the quickstart."""
    if args.sample:
        sys.path.insert(0, str(REPO_ROOT))  # tests/ is not installed with the package
        from tests.service.fixtures import build_sample_library

        root = Path(args.sample)
        root.mkdir(parents=True, exist_ok=True)
        print(f"building the tests' sample library under {root} …", file=sys.stderr, flush=True)
        sample = build_sample_library(root)
        shape = args.shape or sample.library_dir / f"{sample.query_id}.obj"
        return {"model": sample.model_dir, "index": sample.index_dir, "image": sample.query_image, "shape": shape}
    defaults = quickstart_outputs()
    return {
        "model": Path(args.model or defaults["model"]),
        "index": Path(args.index or defaults["index"]),
        "image": Path(args.image or defaults["query"]),
        "shape": args.shape,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="retriever folder (default: the quickstart's outputs/quickstart/train/final)")
    parser.add_argument("--index", help="index folder (default: the quickstart's outputs/quickstart/index)")
    parser.add_argument("--image", help="query image (default: the quickstart's outputs/quickstart/query.png)")
    parser.add_argument("--shape", type=Path, help="also time shape → shape with this mesh or point file")
    parser.add_argument("--sample", help="build the tests' sample library in this folder and use it (~1 min)")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level (and direct)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers (inference threads)")
    parser.add_argument("--torch-threads", type=int, default=None, help="server and direct (default: cores / workers)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=5, help="untimed searches before each timed series")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the machine line and the Markdown table; return its rows."""
    import torch

    from hf_cmah.index import ShapeIndex, load_retriever

    args = parse_args(argv)
    if args.requests < 1 or min(args.concurrency) < 1 or args.workers < 1:
        raise SystemExit("--requests, --concurrency and --workers must be ≥ 1")
    inputs = resolve_inputs(args)
    for name, path in inputs.items():
        if path is not None and not Path(path).exists():
            raise SystemExit(f"--{name}: {path} does not exist (run `hf-cmah quickstart`, or pass --sample DIR)")
    # the server's default (InferencePool), set explicitly on both sides so they run the same torch threads
    torch_threads = args.torch_threads or max(1, (os.cpu_count() or 1) // args.workers)
    torch.set_num_threads(torch_threads)
    model, processor = load_retriever(str(inputs["model"]))
    index = ShapeIndex.load(inputs["index"], model=model, processor=processor)
    queries = [("image", Path(inputs["image"]))] + ([("shape", Path(inputs["shape"]))] if inputs["shape"] else [])
    server_args = ["--model", str(inputs["model"]), "--index", str(inputs["index"]), "--workers", str(args.workers)]
    server_args += ["--torch-threads", str(torch_threads), "--queue-size", str(max(32, max(args.concurrency)))]

    print(
        f"CPU: {cpu_model()}; SIMD: {simd_flags()}; cores {os.cpu_count()}; torch {torch.__version__}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(
        f"server: --workers {args.workers}, torch threads {torch_threads}; direct: 1 caller, torch threads "
        f"{torch.get_num_threads()}; {len(index)} shapes, {index.code_bits} bits, k = {args.k}; "
        f"{args.requests} requests per row; clients: threads on this machine"
    )
    rows = []
    with ServiceProcess(*server_args) as server:
        for kind, path in queries:
            data = path.read_bytes()
            direct = bench_direct(index, kind, data, path, args.k, args.requests, args.warm_up)
            rows.append({"query": kind, "mode": "direct", "concurrency": 1, **direct})
            for concurrency in args.concurrency:
                bench_service(server.url, kind, data, path.name, args.k, args.warm_up, 1, direct["hits"])
                level = bench_service(
                    server.url, kind, data, path.name, args.k, args.requests, concurrency, direct["hits"]
                )
                rows.append({"query": kind, "mode": "service", "concurrency": concurrency, **level})
                rows[-1]["p50_ratio"] = level["p50_ms"] / direct["p50_ms"]
                rows[-1]["rate_ratio"] = level["rate"] / direct["rate"]
    print("| query | mode | clients | p50 ms | p95 ms | req/s | server p50 ms | × direct p50 | × direct q/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(table_row(row), flush=True)
    return rows


def table_row(row: dict) -> str:
    """One Markdown row; direct rows have no server time and are the 1.00 of the ratios."""
    server_ms, p50_ratio, rate_ratio = "–", "1.00", "1.00"
    if row["mode"] == "service":
        server_ms, p50_ratio, rate_ratio = (
            f"{row['server_p50_ms']:.1f}",
            f"{row['p50_ratio']:.2f}",
            f"{row['rate_ratio']:.2f}",
        )
    cells = [row["query"], row["mode"], row["concurrency"], f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}"]
    cells += [f"{row['rate']:,.1f}", server_ms, p50_ratio, rate_ratio]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


if __name__ == "__main__":
    main()
