"""The one search both front ends call: the JSON API's ``POST /search`` and the Gradio UI."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .libraries import Library, code_hex

MAX_K = 100


@dataclass(frozen=True)
class Hit:
    """One result: the shape, its Hamming distance, its cosine after re-ranking, and its asset names."""

    rank: int
    shape_id: str
    label: str | None
    distance: int
    score: float | None
    thumbnail: str | None
    mesh: str | None


@dataclass(frozen=True)
class SearchOutcome:
    library: str
    code_bits: int
    kind: str
    code: str  # the query's packed code as hex
    latency_ms: float
    hits: list[Hit]


def search_library(library: Library, kind: str, query, k: int = 10, rerank: int = 0) -> SearchOutcome:
    """The ``k`` nearest shapes of one image (PIL) or point cloud ``[N, 3|6]``, best first.

    ``k`` and ``rerank`` are capped at the library's size, so a small library answers with
    what it has. Encoding and search both count in the latency.
    """
    started = time.perf_counter()
    index = library.index  # one consistent index for the whole request (writes swap it)
    encode = index.encoder.encode_images if kind == "image" else index.encoder.encode_shapes
    codes, embeds = encode([query])
    hits = _hits(index, codes, embeds, k, rerank) if len(index) else []
    latency_ms = (time.perf_counter() - started) * 1000
    return SearchOutcome(library.name, index.code_bits, kind, code_hex(codes[0]), round(latency_ms, 2), hits)


def _hits(index, codes, embeds, k: int, rerank: int) -> list[Hit]:
    k, rerank = min(k, len(index)), min(rerank, len(index))  # both checked at the boundary (1..MAX_K, ≥ 0)
    result = index.search(codes, k=k, rerank=rerank, query_embeddings=embeds if rerank else None, with_metadata=True)
    scores = result.scores[0] if result.scores is not None else [None] * len(result.ids[0])
    return [
        Hit(rank, shape_id, meta["label"], int(distance), score, meta["thumbnail"], meta["mesh"])
        for rank, (shape_id, distance, score, meta) in enumerate(
            zip(result.ids[0], result.distances[0], scores, result.metadata[0]), start=1
        )
    ]


__all__ = ["MAX_K", "Hit", "SearchOutcome", "search_library"]
