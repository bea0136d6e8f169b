"""A retriever fitted to its own tiny data, for tests that a trained model beats random codes.

Twelve synthetic shapes (tests/conftest.py ``synthetic_pairs``), each with its silhouette as the
image and its own class, so that retrieving the right shape is retrieving the right class. The
hash heads of a smaller-than-tiny CMAH model are fitted (frozen encoders, seconds) until every
image's nearest shape code is its own shape's, by tests/service/fixtures.py ``fit_hash_heads``.
The rows are stored in descending id order, so scoring that forgets to sort the database by
``shape_id`` (as evaluation and the index do) pairs the wrong labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_SHAPES = 12
CODE_BITS = 32


@dataclass(frozen=True)
class FittedRetriever:
    model: object  # CMAHModel, eval mode
    processor: object  # CMAHProcessor
    dataset: object  # datasets.Dataset in the layout of `hf-cmah data build`: one render row per shape
    images: list  # PIL images, row order
    shape_ids: list[str]  # row order


def fitted_retriever() -> FittedRetriever:
    import datasets
    from PIL import Image

    from hf_cmah import CMAHModel, CMAHProcessor
    from hf_cmah.data.features import empty_view, shape_features
    from tests.conftest import mini_config, synthetic_pairs
    from tests.service.fixtures import fit_hash_heads

    config = mini_config(CODE_BITS)
    pixels, clouds = synthetic_pairs(NUM_SHAPES, config.num_points, config.image_size, seed=0)
    images = [Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for image in pixels]
    torch.manual_seed(0)
    model = CMAHModel(config).eval()
    processor = CMAHProcessor.from_model_config(config)
    fit_hash_heads(model, processor, images, [[cloud.numpy()] for cloud in clouds])
    shape_ids = [f"s{NUM_SHAPES - 1 - row:02d}" for row in range(NUM_SHAPES)]  # descending: scoring must sort
    rows = [
        {
            "shape_id": shape_id,
            "label": NUM_SHAPES - 1 - row,  # the shape's own class
            "points": clouds[row].numpy(),
            "image": images[row],
            "view": {**empty_view("render"), "index": 0},
            "source": "synthetic",
            "mesh_path": "",
        }
        for row, shape_id in enumerate(shape_ids)
    ]
    features = shape_features([f"s{label:02d}" for label in range(NUM_SHAPES)], config.num_points)
    dataset = datasets.Dataset.from_list(rows, features=features)
    return FittedRetriever(model, processor, dataset, images, shape_ids)


__all__ = ["CODE_BITS", "NUM_SHAPES", "FittedRetriever", "fitted_retriever"]
