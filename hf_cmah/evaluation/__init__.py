"""Retrieval evaluation: metrics (NumPy), the batch encoder (`encoding`), encoding and scoring a split
(`retrieval`), plots; `hf-cmah eval` is in hf_cmah.cli.

The metrics are imported here; the names of `encoding` and `retrieval` load on first use (PEP 562),
so that ``import hf_cmah.evaluation`` stays light (no datasets, no tqdm).
"""

from __future__ import annotations

import importlib

from .metrics import (
    average_precision,
    cosine_distances,
    hamming_distances,
    instance_accuracy,
    precision_at_k,
    precision_recall_by_radius,
    rank_database,
    retrieval_metrics,
)

_LAZY = {
    "codes_and_embeds": ".encoding",
    "encode_batch": ".encoding",
    "encode_batches": ".encoding",
    "EncodedSet": ".retrieval",
    "encode_images": ".retrieval",
    "encode_shapes": ".retrieval",
    "image_rows": ".retrieval",
    "markdown_table": ".retrieval",
    "random_codes": ".retrieval",
    "score_retrieval": ".retrieval",
    "summarize": ".retrieval",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


__all__ = [
    "EncodedSet",
    "average_precision",
    "codes_and_embeds",
    "cosine_distances",
    "encode_batch",
    "encode_batches",
    "encode_images",
    "encode_shapes",
    "hamming_distances",
    "image_rows",
    "instance_accuracy",
    "markdown_table",
    "precision_at_k",
    "precision_recall_by_radius",
    "random_codes",
    "rank_database",
    "retrieval_metrics",
    "score_retrieval",
    "summarize",
]
