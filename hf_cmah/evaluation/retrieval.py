"""Encode a data split with any retriever and score retrieval in both directions.

The dataset columns are the data pipeline's: ``shape_id``, ``label`` (ClassLabel),
``points`` (``[N, 3]``), an image column (``image`` by default), ``view``, ``source``.
Queries are image rows; the shape database holds one row per ``shape_id``, sorted by id
(so that Hamming ties resolve by id, see `hf_cmah.evaluation.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.storage import unique_shape_rows
from ..errors import InvalidInputError
from .encoding import encode_batches
from .metrics import cosine_distances, hamming_distances, retrieval_metrics


@dataclass
class EncodedSet:
    """Codes and embeddings of one side of a retrieval task, with the labels and ids that score it."""

    codes: np.ndarray | None  # int8 [M, K] of ±1; None for float-only models (no config.code_bits)
    embeds: np.ndarray | None  # float32 [M, D], L2-normalised; None for code-only baselines
    labels: np.ndarray  # int [M]
    shape_ids: np.ndarray  # str [M]: the shape each row shows (images) or is (shapes)


def image_rows(dataset, kind: str):
    """The rows and image column of one kind of image: a ``view.kind`` (render, photo, …), or
    ``thumbnail`` (the thumbnail column, one row per shape). Returns ``(dataset, column)``."""
    if kind == "thumbnail" and "thumbnail" in dataset.column_names:
        return dataset.select(unique_shape_rows(dataset)), "thumbnail"
    kinds = dataset.select_columns(["view"]).flatten().with_format("arrow")[:].column("view.kind").to_pylist()
    rows = [index for index, row_kind in enumerate(kinds) if row_kind == kind]
    if not rows:
        raise InvalidInputError(f"no image of kind {kind!r}: the rows have view.kind {sorted(set(kinds))}")
    return dataset.select(rows), "image"


def encode_images(
    model, processor, dataset, batch_size: int = 64, image_column: str = "image", progress: bool = True
) -> EncodedSet:
    """Every row's image through the model's codes and embeddings (see :mod:`hf_cmah.evaluation.encoding`)."""
    model.eval()
    rows = dataset.select_columns([image_column])
    batches = (rows[start : start + batch_size][image_column] for start in range(0, len(rows), batch_size))
    codes, embeds = encode_batches(model, processor, "image", batches, len(rows), f"encode {image_column}", progress)
    return EncodedSet(codes, embeds, np.asarray(dataset["label"]), np.asarray(dataset["shape_id"]))


def encode_shapes(model, processor, dataset, batch_size: int = 64, progress: bool = True) -> EncodedSet:
    """One point cloud per ``shape_id`` (sorted by id) through the model's codes and embeddings."""
    model.eval()
    shapes = dataset.select(unique_shape_rows(dataset)).select_columns(["shape_id", "label", "points"])
    clouds = shapes.with_format("numpy", columns=["points"])
    batches = (list(clouds[start : start + batch_size]["points"]) for start in range(0, len(clouds), batch_size))
    codes, embeds = encode_batches(model, processor, "shape", batches, len(shapes), "encode shapes", progress)
    return EncodedSet(codes, embeds, np.asarray(shapes["label"]), np.asarray(shapes["shape_id"]))


def random_codes(encoded: EncodedSet, code_bits: int, seed: int) -> EncodedSet:
    """The chance baseline: the same rows with uniformly random ±1 codes (no embeddings)."""
    generator = np.random.default_rng(seed)
    codes = np.where(generator.random((len(encoded.labels), code_bits)) < 0.5, -1, 1).astype(np.int8)
    return EncodedSet(codes, None, encoded.labels, encoded.shape_ids)


def score_retrieval(images: EncodedSet, shapes: EncodedSet, **metric_options) -> dict:
    """Metrics of image→shape and shape→image retrieval by Hamming distance, and by cosine when embedded.

    Keys: ``image_to_shape``, ``shape_to_image`` (Hamming) where both sides have codes, and
    ``image_to_shape_cosine``, ``shape_to_image_cosine`` where both sides have embeddings; each
    is a `retrieval_metrics` dict.
    """
    results = {}
    if images.codes is not None and shapes.codes is not None:
        results |= _hamming_results(images, shapes, **metric_options)
    if images.embeds is not None and shapes.embeds is not None:
        cosine = cosine_distances(images.embeds, shapes.embeds)
        results["image_to_shape_cosine"] = retrieval_metrics(
            cosine, images.labels, shapes.labels, images.shape_ids, shapes.shape_ids, **metric_options
        )
        results["shape_to_image_cosine"] = retrieval_metrics(
            cosine.T, shapes.labels, images.labels, shapes.shape_ids, images.shape_ids, **metric_options
        )
    return results


def _hamming_results(images: EncodedSet, shapes: EncodedSet, **metric_options) -> dict:
    code_bits = images.codes.shape[1]
    distances = hamming_distances(images.codes, shapes.codes)  # (Q_images, N_shapes)
    return {
        "image_to_shape": retrieval_metrics(
            distances,
            images.labels,
            shapes.labels,
            images.shape_ids,
            shapes.shape_ids,
            code_bits=code_bits,
            **metric_options,
        ),
        "shape_to_image": retrieval_metrics(
            distances.T,
            shapes.labels,
            images.labels,
            shapes.shape_ids,
            images.shape_ids,
            code_bits=code_bits,
            **metric_options,
        ),
    }


SUMMARY_KEYS = ("map@all", "map@all_tie_aware", "map@100", "p@10", "acc@1", "acc@10")


def summarize(results: dict, keys: tuple[str, ...] = SUMMARY_KEYS) -> dict:
    """The scalar headline numbers of `score_retrieval` output, ``{"image_to_shape/map@all": ..., ...}``."""
    return {
        f"{direction}/{key}": metrics[key] for direction, metrics in results.items() for key in keys if key in metrics
    }


HEADLINE = (
    ("image_to_shape", "map@all", "i→s mAP@all"),
    ("image_to_shape", "map@all_tie_aware", "i→s mAP@all tie-aware"),
    ("image_to_shape", "p@10", "i→s P@10"),
    ("image_to_shape", "acc@1", "i→s Acc@1"),
    ("image_to_shape", "acc@10", "i→s Acc@10"),
    ("shape_to_image", "map@all", "s→i mAP@all"),
    ("shape_to_image", "p@10", "s→i P@10"),
    ("shape_to_image", "acc@1", "s→i Acc@1"),
)


def markdown_table(results: dict) -> str:
    """One row per model of ``{model: score_retrieval output}``: the headline numbers `hf-cmah eval` prints."""
    header = "| model | " + " | ".join(name for _, _, name in HEADLINE) + " |"
    lines = [header, "|" + "---|" * (len(HEADLINE) + 1)]
    for model, scores in results.items():
        cells = [f"{scores[direction][key]:.3f}" for direction, key, _ in HEADLINE]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "EncodedSet",
    "encode_images",
    "encode_shapes",
    "image_rows",
    "markdown_table",
    "random_codes",
    "score_retrieval",
    "summarize",
]
