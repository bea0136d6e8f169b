"""The default search backend: exact Hamming search with the compiled kernel over all cores."""

from __future__ import annotations

import numpy as np


class ExactBackend:
    """Exact top-k over the packed codes held in memory (no copy: the kernel reads them as words)."""

    name = "exact"

    def __init__(self, codes: np.ndarray, code_bits: int):
        self.codes = codes
        self.code_bits = code_bits

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows int64 [Q, k'], distances int32 [Q, k'])`` sorted by (distance, row)."""
        from .kernels import topk_search  # numba loads on first search, not on `hf-cmah --help`

        return topk_search(queries, self.codes, k, self.code_bits)

    def range_search(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, every row within ``radius`` bits, sorted by (distance, row)."""
        from .kernels import range_rows

        return range_rows(queries, self.codes, radius)


__all__ = ["ExactBackend"]
