"""Approximate search backend: multi-index hashing over binary codes (faiss ``IndexBinaryMultiHash``).

The K-bit code is cut into ``num_tables`` substrings, each a hash-table key; a query looks up
its own substrings and their neighbours within ``num_flips`` bit flips, and only those
candidates get an exact distance. The default, 4 tables and no flips, was the best trade-off
measured (docs/BENCHMARKS.md): each flip multiplies the buckets probed by ~16 and faiss's
per-candidate cost makes 1 flip slower than the exact kernel. Codes of a trained model put true neighbours within a few
bits, so few flips find them while touching a small fraction of the library; on random codes
recall is low. Measured recall@k is in docs/INDEX.md and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


class MultiIndexHashingBackend:
    """Multi-index hashing: ``num_tables`` tables keyed by ``code_bits / num_tables``-bit substrings."""

    name = "approximate"

    def __init__(self, codes: np.ndarray, code_bits: int, num_tables: int | None = None, num_flips: int = 0):
        import faiss

        num_tables = num_tables or max(1, code_bits // 16)
        if code_bits % num_tables or code_bits // num_tables > 32:
            raise InvalidInputError(
                f"num_tables={num_tables}: must divide code_bits={code_bits} into substrings of at most 32 bits"
            )
        self.code_bits = code_bits
        self.index = faiss.IndexBinaryMultiHash(code_bits, num_tables, code_bits // num_tables)
        self.index.nflip = num_flips
        self.index.add(np.ascontiguousarray(codes))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate ``(rows, distances)``; rows not found are dropped, order is (distance, row)."""
        distances, rows = self.index.search(np.ascontiguousarray(queries), k)
        # faiss leaves ties in table order and pads misses with -1: sort by (distance, row), misses last.
        distances = np.where(rows < 0, self.code_bits + 1, distances).astype(np.int32)
        order = np.lexsort((rows, distances), axis=-1)
        return np.take_along_axis(rows, order, -1).astype(np.int64), np.take_along_axis(distances, order, -1)


__all__ = ["MultiIndexHashingBackend"]
