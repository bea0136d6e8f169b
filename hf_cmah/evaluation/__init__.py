"""Retrieval evaluation: metrics (NumPy), encoding and scoring (`retrieval`), plots; `hf-cmah eval` is in hf_cmah.cli.

Only the metrics are imported here, so that ``import hf_cmah.evaluation`` stays light.
"""

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

__all__ = [
    "average_precision",
    "cosine_distances",
    "hamming_distances",
    "instance_accuracy",
    "precision_at_k",
    "precision_recall_by_radius",
    "rank_database",
    "retrieval_metrics",
]
