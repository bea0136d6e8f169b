"""Why thumbnail queries fail: three ways to make them square, hub shapes, and which side lacks class structure.

    python docs/results/dg-cpu/session4/diagnose_thumbnails.py outputs/dg/psb-plain MODEL_DIR...

For each model, on the PSB test split (857 thumbnails against 857 shapes, 64-bit codes):
- image → shape mAP@all, tie-aware mAP and Acc@10 with the 160 × 120 thumbnails made square three
  ways: ``pad`` (the processor's rule: its border colour when uniform, else white), ``edge`` (the
  edge pixels repeated) and ``crop`` (the centre square);
- hubs: distinct query codes, distinct top-1 shapes, and the most top-10 lists one shape is in;
- leave-one-out class mAP (cosine) of shape → shape and thumbnail → thumbnail, and of random vectors.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

import hf_cmah.processing_cmah as processing
from hf_cmah.data.storage import load_built_dataset
from hf_cmah.evaluation.metrics import (
    average_precision,
    hamming_distances,
    rank_database,
    ranked_relevance,
    retrieval_metrics,
)
from hf_cmah.evaluation.retrieval import encode_images, encode_shapes, image_rows


def fit_edge(image: Image.Image, size: int, background) -> Image.Image:
    pixels = np.asarray(image)
    side = max(image.width, image.height)
    rows, columns = side - image.height, side - image.width
    padding = ((rows // 2, rows - rows // 2), (columns // 2, columns - columns // 2), (0, 0))
    return Image.fromarray(np.pad(pixels, padding, mode="edge")).resize((size, size), Image.Resampling.BICUBIC)


def fit_crop(image: Image.Image, size: int, background) -> Image.Image:
    side = min(image.width, image.height)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def leave_one_out_map(vectors: np.ndarray, labels: np.ndarray) -> float:
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1 - vectors @ vectors.T
    np.fill_diagonal(distances, np.inf)  # each item last in its own ranking, then dropped
    relevance = ranked_relevance(rank_database(distances)[:, :-1], labels, labels)
    return float(average_precision(relevance[relevance.sum(axis=1) > 0]).mean())


def main(data: str, models: list[str]) -> None:
    torch.set_num_threads(2)
    split = load_built_dataset(data)["test"]
    queries, column = image_rows(split, "thumbnail")
    fits = {"pad": processing._fit_square, "edge": fit_edge, "crop": fit_crop}
    for name in models:
        model, processor = AutoModel.from_pretrained(name).eval(), AutoProcessor.from_pretrained(name)
        shapes = encode_shapes(model, processor, split, progress=False)
        for fit, function in fits.items():
            processing._fit_square = function
            images = encode_images(model, processor, queries, image_column=column, progress=False)
            distances = hamming_distances(images.codes, shapes.codes)
            scores = retrieval_metrics(
                distances, images.labels, shapes.labels, images.shape_ids, shapes.shape_ids, code_bits=64
            )
            top10 = rank_database(distances)[:, :10]
            print(
                f"{name} {fit}: mAP {scores['map@all']:.3f} tie-aware {scores['map@all_tie_aware']:.3f} "
                f"Acc@10 {scores['acc@10']:.3f} | distinct codes {len(np.unique(images.codes, axis=0))}, "
                f"distinct top-1 {len(np.unique(top10[:, 0]))}, most top-10 lists {np.bincount(top10.ravel()).max()}"
            )
        processing._fit_square = fits["pad"]
        images = encode_images(model, processor, queries, image_column=column, progress=False)
        noise = np.random.default_rng(0).standard_normal(shapes.embeds.shape)
        print(
            f"{name} class mAP, leave one out: shape→shape {leave_one_out_map(shapes.embeds, shapes.labels):.3f}, "
            f"thumbnail→thumbnail {leave_one_out_map(images.embeds, images.labels):.3f}, "
            f"random {leave_one_out_map(noise, shapes.labels):.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
