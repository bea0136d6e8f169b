"""Approximate search backends over binary codes: an inverted file (default), a graph (HNSW), multi-index hashing.

- **Inverted file** (faiss ``IndexBinaryIVF``, ``method="ivf"``): k-means in Hamming space cuts
  the library into ``nlist`` cells; a query scans only the codes of its ``nprobe`` nearest
  cells. Codes of a trained model are clustered (shapes of a kind hash alike), so a few cells
  hold the true neighbours: on a trained PSB model's codes, 87× the exact throughput at
  recall@10 0.997 at 1M codes (docs/BENCHMARKS.md).
- **HNSW** (faiss ``IndexBinaryHNSW``, ``method="hnsw"``): a navigable small-world graph over the
  codes (``2 m`` links a node at the base level); a query walks it greedily, keeping ``ef_search``
  candidates. No training, but the links cost ~``8 m`` bytes a code (256 B at m = 32, 32× a
  64-bit code) and it builds at 20–30k codes/s on 2 cores. On a trained PSB model's codes the
  inverted file was both faster and more exact (docs/BENCHMARKS.md), so it stays the default.
- **Multi-index hashing** (faiss ``IndexBinaryMultiHash``, ``method="mih"``): the K-bit code is
  cut into ``num_tables`` substrings, each a hash-table key; a query looks up its own substrings
  and their neighbours within ``num_flips`` bit flips, and only those candidates get an exact
  distance. Fast when neighbours share whole substrings (near-duplicates); cross-modal queries
  (image codes against shape codes) rarely do, and one flip per substring probes ~16× the
  buckets, which is slower than the exact kernel.

On uniformly random codes none has structure to exploit: use exact there. Every backend
returns rows sorted by (distance, row), like the exact kernel; rows not found are dropped.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ..errors import InvalidInputError

# Training samples per cell for k-means (faiss warns below 39).
SAMPLES_PER_CELL = 50


class ApproximateBackend:
    """faiss binary index behind the backend interface: ``search(queries, k)`` → ``(rows, distances)``."""

    name = "approximate"

    def __init__(self, codes: np.ndarray, code_bits: int, method: str = "ivf", **options):
        codes = np.ascontiguousarray(codes)
        self.code_bits = code_bits
        self.method = method
        if method not in METHODS:
            raise InvalidInputError(
                f"method: {method!r} is not 'ivf' (inverted file), 'hnsw' (graph) or 'mih' (multi-index hashing)"
            )
        make_index = METHODS[method]
        allowed = [name for name in inspect.signature(make_index).parameters if name not in ("codes", "code_bits")]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise InvalidInputError(
                f"{unknown[0]}: not an option of method {method!r} (its options: {', '.join(allowed)})"
            )
        self.index = make_index(codes, code_bits, **options)
        self.index.add(codes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate ``(rows, distances)``; rows not found are -1 and sorted last, order is (distance, row)."""
        distances, rows = self.index.search(np.ascontiguousarray(queries), k)
        # faiss leaves ties in cell/table order and pads misses with -1: sort by (distance, row), misses last.
        distances = np.where(rows < 0, self.code_bits + 1, distances).astype(np.int32)
        order = np.lexsort((rows, distances), axis=-1)
        return np.take_along_axis(rows, order, -1).astype(np.int64), np.take_along_axis(distances, order, -1)


def _inverted_file(codes: np.ndarray, code_bits: int, nlist: int | None = None, nprobe: int = 16, seed: int = 0):
    """An untrained-then-trained ``IndexBinaryIVF``: ``nlist`` defaults to √N cells (1,000 at 1M codes)."""
    import faiss

    nlist = nlist or max(1, min(int(math.sqrt(len(codes))), len(codes) // SAMPLES_PER_CELL))
    if nlist < 1 or nprobe < 1:
        raise InvalidInputError(f"nlist={nlist}, nprobe={nprobe}: both must be ≥ 1")
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(code_bits), code_bits, nlist)
    index.nprobe = nprobe
    sample = np.random.default_rng(seed).permutation(len(codes))[: SAMPLES_PER_CELL * nlist]
    # An empty index still needs trained cells before codes can be added later.
    index.train(codes[np.sort(sample)] if len(codes) else np.zeros((1, code_bits // 8), np.uint8))
    return index


def _hnsw(codes: np.ndarray, code_bits: int, m: int = 32, ef_search: int = 64, ef_construction: int = 40):
    """An ``IndexBinaryHNSW`` with ``m`` links a node; ``ef_search`` trades speed for recall at query time."""
    import faiss

    if m < 2 or ef_search < 1 or ef_construction < 1:
        raise InvalidInputError(
            f"m={m}, ef_search={ef_search}, ef_construction={ef_construction}: need m ≥ 2, the rest ≥ 1"
        )
    index = faiss.IndexBinaryHNSW(code_bits, m)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    return index


def _multi_index_hashing(codes: np.ndarray, code_bits: int, num_tables: int | None = None, num_flips: int = 0):
    """``IndexBinaryMultiHash`` with ``num_tables`` substrings (default K/16 bits each) and ``num_flips`` flips."""
    import faiss

    num_tables = num_tables or max(1, code_bits // 16)
    if code_bits % num_tables or code_bits // num_tables > 32:
        raise InvalidInputError(
            f"num_tables={num_tables}: must divide code_bits={code_bits} into substrings of at most 32 bits"
        )
    index = faiss.IndexBinaryMultiHash(code_bits, num_tables, code_bits // num_tables)
    index.nflip = num_flips
    return index


# method → a function of (codes, code_bits, **options) making the empty faiss index the codes are added to
METHODS = {"ivf": _inverted_file, "hnsw": _hnsw, "mih": _multi_index_hashing}

__all__ = ["METHODS", "ApproximateBackend"]
