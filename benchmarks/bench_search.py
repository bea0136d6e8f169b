"""Exact and approximate Hamming search throughput, and encoding throughput → docs/BENCHMARKS.md.

Every figure is measured in the same run, with the same thread count, against faiss
``IndexBinaryFlat`` and a plain NumPy XOR + popcount baseline; medians of ``--repeats`` runs;
every result of the kernel is checked against faiss (equal distances) before it is timed.
The CPU's SIMD flags are printed beside the table: read ratios, not absolute numbers.

    python benchmarks/bench_search.py --sizes 10000 100000 1000000 --bits 16 32 64 128
    python benchmarks/bench_search.py --sizes 10000000 --bits 64 --threads 1 2
    python benchmarks/bench_search.py --approximate 10000000 --encoding 64 --sizes
    python benchmarks/bench_search.py --sizes --approximate 10000000 --approximate-codes trained \
        --model runs/psb-gpu/psb-tiny-64/final --data ~/.cache/hf-cmah/datasets/psb-4v-1024p-workbench-224px
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numba
import numpy as np
from machine import let_openmp_idle, machine_line
from numba import njit, prange

from hf_cmah.index import simd
from hf_cmah.index.kernels import topk_search


def timed(function, repeats: int, warm_up: bool = True) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last result (checked for correctness by the caller).

    ``warm_up`` adds an untimed first call (JIT compilation, page faults, caches); faiss has no
    JIT, so its first call is timed too, which saves minutes at 10M codes.
    """
    if warm_up:
        function()
    let_openmp_idle()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


@njit(cache=True, parallel=True)
def _sum_words(words):
    total = np.uint64(0)
    for index in prange(words.shape[0]):
        total += words[index]
    return total


def dram_bandwidth(repeats: int) -> float:
    """Read bandwidth in bytes/s: a parallel sum over 1 GiB, far beyond any L3."""
    words = np.ones(1 << 27, np.uint64)
    return words.nbytes / timed(lambda: _sum_words(words), repeats)[0]


def numpy_topk(queries: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """The plain NumPy baseline: XOR + ``np.bitwise_count`` per query, then argpartition."""
    words = codes.view(np.uint8)
    results = []
    for query in queries:
        distances = np.bitwise_count(np.bitwise_xor(words, query)).sum(axis=1, dtype=np.int32)
        results.append(np.sort(distances[np.argpartition(distances, k - 1)[:k]]))
    return np.array(results)


def bench_exact(size, bits, batch, k, threads, repeats, faiss_repeats, numpy_queries, rng) -> dict:
    import faiss

    numba.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    codes = rng.integers(0, 256, (size, bits // 8), dtype=np.uint8)
    # single queries are timed as a loop of separate calls, batched ones as one call
    queries = rng.integers(0, 256, (batch if batch > 1 else 20, bits // 8), dtype=np.uint8)
    index = faiss.IndexBinaryFlat(bits)
    index.add(codes)

    def ours():
        if batch > 1:
            return topk_search(queries, codes, k, bits, threads)[1]
        return np.concatenate([topk_search(query[None], codes, k, bits, threads)[1] for query in queries])

    def theirs():
        if batch > 1:
            return index.search(queries, k)[0]
        return np.concatenate([index.search(query[None], k)[0] for query in queries])

    ours_s, our_distances = timed(ours, repeats)
    faiss_s, faiss_distances = timed(theirs, faiss_repeats, warm_up=False)
    exact = bool(np.array_equal(our_distances, faiss_distances))
    subset = queries[:numpy_queries]
    numpy_s = None
    if len(subset):
        numpy_s, numpy_distances = timed(lambda: numpy_topk(subset, codes, k), 1, warm_up=False)
        exact &= bool(np.array_equal(numpy_distances, our_distances[: len(subset)]))
    return {
        "ours_qps": len(queries) / ours_s,
        "faiss_qps": len(queries) / faiss_s,
        "numpy_qps": len(subset) / numpy_s if numpy_s else None,
        "exact": exact,
    }


def bench_shape_index(size, bits, k, repeats, rng) -> dict:
    """``ShapeIndex`` end to end (codes in, shape ids out) beside the bare kernel, and its save/load/add/remove times.

    Both run on their default threads (``NUMBA_NUM_THREADS``), as a user's search does.
    """
    import tempfile

    from hf_cmah.index import ShapeIndex

    codes = rng.integers(0, 256, (size, bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (20, bits // 8), dtype=np.uint8)
    start = time.perf_counter()
    index = ShapeIndex.from_codes(codes, [f"shape-{row:09d}" for row in range(size)], labels=["chair"] * size)
    row = {"from_codes_s": time.perf_counter() - start}

    def per_query_ms(search) -> float:
        return timed(lambda: [search(query[None]) for query in queries], repeats)[0] / len(queries) * 1e3

    row["kernel_ms"] = per_query_ms(lambda query: topk_search(query, index.codes, k, bits))
    row["search_ms"] = per_query_ms(lambda query: index.search(query, k=k))
    with tempfile.TemporaryDirectory() as folder:
        row["save_s"] = timed(lambda: index.save(Path(folder, "index")), 1, warm_up=False)[0]
        row["load_s"], loaded = timed(lambda: ShapeIndex.load(Path(folder, "index")), 1, warm_up=False)
    row["loaded_search_ms"] = per_query_ms(lambda query: loaded.search(query, k=k))
    new_codes = rng.integers(0, 256, (10, bits // 8), dtype=np.uint8)
    row["add_s"] = timed(lambda: index.add(new_codes, [f"new-{row}" for row in range(10)]), 1, warm_up=False)[0]
    row["remove_s"] = timed(lambda: index.remove([f"new-{row}" for row in range(10)]), 1, warm_up=False)[0]
    return row


def clustered_codes(size: int, bits: int, rng, clusters: int = 100_000, flip: float = 0.04) -> np.ndarray:
    """Codes shaped like a trained hashing model's: cluster codes with a few percent of bits flipped."""
    centres = rng.integers(0, 2, (clusters, bits), dtype=np.uint8)
    packed = np.empty((size, bits // 8), np.uint8)
    for start in range(0, size, 1_000_000):
        stop = min(start + 1_000_000, size)
        members = centres[rng.integers(0, clusters, stop - start)]
        packed[start:stop] = np.packbits(members ^ (rng.random(members.shape) < flip), axis=1)
    return packed


def trained_codes(size: int, model_path: str, data_path: str, rng, resamples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Library codes shaped by a trained model's hash head, and real image-query codes of that model.

    A trained point encoder runs at ~70 shapes/s on 2 CPU cores, so 10M real shape codes
    are out of reach here; what is real: the model (its point encoder and hash head), the
    pooled features of every shape in ``data_path`` (each cloud resampled ``resamples``
    times), and the 1,000 image queries (renders through the model's image tower). Each
    library entry is one real shape's mean feature plus Gaussian noise with the within-shape
    covariance measured over those resamplings (how much the model's own input noise moves
    a feature), passed through the trained hash head: ``size`` codes around a few thousand
    real shapes, a harder case for multi-index hashing than a diverse library.
    """
    import torch
    from transformers import AutoModel, AutoProcessor

    import hf_cmah  # noqa: F401  (registers the Auto classes)
    from hf_cmah.codes import pack_codes
    from hf_cmah.data.storage import load_built_dataset, unique_shape_rows

    model = AutoModel.from_pretrained(model_path).eval()
    processor = AutoProcessor.from_pretrained(model_path)
    splits = load_built_dataset(data_path)
    head = model.point_hash_head
    pooled = []
    hook = head.register_forward_hook(
        lambda module, inputs, output: pooled.append(torch.cat([inputs[0][:, 0], inputs[0][:, 1:].mean(dim=1)], -1))
    )
    features = []
    with torch.no_grad():
        clouds = [
            cloud
            for split in splits.values()
            for cloud in split.select(unique_shape_rows(split)).with_format("numpy", columns=["points"])["points"]
        ]
        for seed in range(resamples):
            processor.seed = seed
            pooled.clear()
            for start in range(0, len(clouds), 128):
                model.get_shape_logits(processor(points=clouds[start : start + 128], return_tensors="pt")["points"])
            features.append(torch.cat(pooled))
        hook.remove()
        features = torch.stack(features, dim=1)  # [shapes, resamples, 2C]
        means = features.mean(dim=1)
        within = (features - means[:, None]).reshape(-1, features.shape[-1])
        covariance = within.T @ within / (len(clouds) * (resamples - 1))
        noise = torch.linalg.cholesky(covariance + 1e-6 * torch.eye(len(covariance)))
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        codes = np.empty((size, model.config.code_bits // 8), np.uint8)
        for start in range(0, size, 1_000_000):
            count = min(1_000_000, size - start)
            picked = means[torch.randint(len(clouds), (count,), generator=generator)]
            sampled = picked + torch.randn(count, len(covariance), generator=generator) @ noise.T
            codes[start : start + count] = pack_codes(head.hash(head.act(head.dense(sampled))) > 0)
        renders = splits["test"]
        rows = rng.choice(len(renders), 1000, replace=len(renders) < 1000)
        images = renders.select(rows.tolist())["image"]
        query_codes = np.concatenate(
            [
                pack_codes(
                    model.get_image_logits(
                        processor(images=images[start : start + 128], return_tensors="pt")["pixel_values"]
                    )
                    > 0
                )
                for start in range(0, len(images), 128)
            ]
        )
    print(
        f"trained codes: {len(clouds)} real shapes × {resamples} resamplings → {size:,} library codes; {len(query_codes)} real image queries"
    )
    return codes, query_codes


def approximate_options(config: str) -> dict:
    """``ivfNPROBE`` (inverted file, √N cells), ``hnswMxEF`` (graph: M links, ef_search) or ``mihTABLESxFLIPS``
    (multi-index hashing) → backend options."""
    if config.startswith("ivf"):
        return {"method": "ivf", "nprobe": int(config[3:])}
    if config.startswith("hnsw"):
        links, ef_search = config.removeprefix("hnsw").split("x")
        return {"method": "hnsw", "m": int(links), "ef_search": int(ef_search)}
    tables, flips = config.removeprefix("mih").split("x")
    return {"method": "mih", "num_tables": int(tables), "num_flips": int(flips)}


def bench_approximate(
    size, bits, k, threads, repeats, kinds, configs, rng, model_path=None, data_path=None
) -> list[dict]:
    import faiss

    from hf_cmah.index.approximate import ApproximateBackend

    numba.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    rows = []
    for kind in kinds:
        if kind == "trained":
            codes, queries = trained_codes(size, model_path, data_path, rng)
        elif kind == "clustered":
            codes = clustered_codes(size, bits, rng)
        else:
            codes = rng.integers(0, 256, (size, bits // 8), dtype=np.uint8)
        if kind != "trained":
            picked = codes[rng.choice(size, 1000, replace=False)]
            queries = picked ^ (rng.random((1000, bits // 8)) < 0.02).astype(np.uint8)
        exact_s, (_, exact_distances) = timed(lambda q=queries, c=codes: topk_search(q, c, k, bits, threads), repeats)
        for config in configs:
            start = time.perf_counter()
            backend = ApproximateBackend(codes, bits, **approximate_options(config))
            build_s = time.perf_counter() - start
            found = backend.search(queries, k)[1]
            # recall@k by distance: ties make ids ambiguous, distances are not
            recall = float(np.mean(np.sort(found, axis=1) <= exact_distances[:, -1:]))
            approx_s = timed(lambda b=backend, q=queries: b.search(q, k), repeats)[0]
            rows.append(
                {
                    "codes": kind,
                    "config": config,
                    "build_s": build_s,
                    "exact_qps": 1000 / exact_s,
                    "approx_qps": 1000 / approx_s,
                    "recall": recall,
                }
            )
    return rows


def bench_encoding(count: int, threads: int, batch_size: int) -> dict:
    import tempfile

    import torch
    import trimesh

    from hf_cmah.index import build_index
    from hf_cmah.modeling import CMAHConfig, CMAHModel

    # set, not inherited: faiss.omp_set_num_threads (the exact rows) also sets the OpenMP pool torch uses
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=64))
    with tempfile.TemporaryDirectory() as folder:
        library = Path(folder, "library")
        for number in range(count):
            mesh = trimesh.creation.icosphere(subdivisions=3) if number % 2 else trimesh.creation.box()
            mesh.apply_scale(1 + number % 5)
            (library / f"class{number % 4}").mkdir(parents=True, exist_ok=True)
            mesh.export(library / f"class{number % 4}" / f"shape{number:04d}.obj")
        start = time.perf_counter()
        build_index(model, library, Path(folder, "index"), batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
    return {
        "shapes": count,
        "batch_size": batch_size,
        "shapes_per_s": count / seconds,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--k", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--threads", type=int, nargs="+", default=[numba.config.NUMBA_NUM_THREADS])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--faiss-repeats", type=int, default=None, help="faiss repeats (default: --repeats)")
    parser.add_argument("--numpy-queries", type=int, default=5, help="queries timed (once) for the slow NumPy baseline")
    parser.add_argument(
        "--approximate", type=int, default=0, help="also benchmark the approximate backend at this size"
    )
    parser.add_argument(
        "--approximate-codes", nargs="+", default=["clustered", "random"], choices=["clustered", "random", "trained"]
    )
    parser.add_argument("--model", help="trained CMAH checkpoint for --approximate-codes trained (64 bits)")
    parser.add_argument("--data", help="built dataset (points + renders) for --approximate-codes trained")
    parser.add_argument(
        "--approximate-configs",
        nargs="+",
        default=["ivf16", "hnsw32x64", "mih4x0"],
        help="ivfNPROBE, hnswMxEF or mihTABLESxFLIPS",
    )
    parser.add_argument("--encoding", type=int, default=0, help="also time build_index on this many mesh files")
    parser.add_argument(
        "--shape-index", type=int, nargs="*", default=[], help="also time ShapeIndex end to end at these sizes"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{machine_line()}; numba {numba.__version__}")
    print(simd.describe(simd.KERNEL))
    if any(size >= 10_000_000 for size in args.sizes):
        for threads in args.threads:
            numba.set_num_threads(threads)
            bandwidth = dram_bandwidth(args.repeats)
            print(f"DRAM read bandwidth, {threads} thread(s): {bandwidth / 1e9:.1f} GB/s")
            for size in (size for size in args.sizes if size >= 10_000_000):
                for bits in args.bits:
                    bound_ms = size * bits / 8 / bandwidth * 1e3
                    print(f"  DRAM bound {size:,} × {bits} bits: {bound_ms:.2f} ms per single query")
    if args.sizes:
        print("| codes | bits | batch | k | threads | ours q/s | faiss q/s | NumPy q/s | × faiss | × NumPy | exact |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for size in args.sizes:
        for bits in args.bits:
            for batch in args.batches:
                for k in args.k:
                    for threads in args.threads:
                        row = bench_exact(
                            size, bits, batch, k, threads, args.repeats, args.faiss_repeats or args.repeats,
                            args.numpy_queries, rng,
                        )  # fmt: skip
                        numpy_ratio = f"{row['ours_qps'] / row['numpy_qps']:.1f}" if row["numpy_qps"] else "–"
                        numpy_qps = f"{row['numpy_qps']:,.0f}" if row["numpy_qps"] else "–"
                        print(
                            f"| {size:,} | {bits} | {batch} | {k} | {threads} | {row['ours_qps']:,.0f} | "
                            f"{row['faiss_qps']:,.0f} | {numpy_qps} | {row['ours_qps'] / row['faiss_qps']:.1f} | "
                            f"{numpy_ratio} | {'yes' if row['exact'] else 'NO'} |",
                            flush=True,
                        )
    if args.approximate:
        print(f"\nApproximate, {args.approximate:,} × 64 bits, k = 10, batch 1000, {max(args.threads)} threads:")
        print("| codes | method | build s | exact q/s | approx q/s | speed-up | recall@10 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        rows = bench_approximate(
            args.approximate, 64, 10, max(args.threads), args.repeats, args.approximate_codes, args.approximate_configs, rng,
            args.model, args.data,
        )  # fmt: skip
        for row in rows:
            print(
                f"| {row['codes']} | {row['config']} | {row['build_s']:.1f} | {row['exact_qps']:,.0f} | "
                f"{row['approx_qps']:,.0f} | {row['approx_qps'] / row['exact_qps']:.1f} | {row['recall']:.3f} |",
                flush=True,
            )
    if args.shape_index:
        threads = numba.config.NUMBA_NUM_THREADS
        print(f"\nShapeIndex end to end, 64 bits, k = 10, single queries, {threads} thread(s) (NUMBA_NUM_THREADS):")
        print(
            "| shapes | kernel ms | ShapeIndex.search ms | after load ms | from_codes s | save s | load s | add 10 s | remove 10 s |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in args.shape_index:
            row = bench_shape_index(size, 64, 10, args.repeats, rng)
            print(
                f"| {size:,} | {row['kernel_ms']:.3f} | {row['search_ms']:.3f} | {row['loaded_search_ms']:.3f} | "
                f"{row['from_codes_s']:.2f} | {row['save_s']:.2f} | {row['load_s']:.2f} | {row['add_s']:.2f} | "
                f"{row['remove_s']:.2f} |",
                flush=True,
            )
    if args.encoding:
        row = bench_encoding(args.encoding, threads=max(args.threads), batch_size=16)
        print(
            f"\nEncoding (mesh files → codes, cmah-tiny, CPU, {row['torch_threads']} torch threads): "
            f"{row['shapes_per_s']:.1f} shapes/s over {row['shapes']} .obj files, batch {row['batch_size']}"
        )


if __name__ == "__main__":
    main()
