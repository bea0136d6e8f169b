"""A small synthetic dataset in the layout of `hf-cmah data build` (Parquet shards under data/)."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = ("sphere", "cube", "rod")


def synthetic_split(num_shapes: int, views: int, seed: int, num_points: int = 128):
    """Shapes of three classes (noisy sphere / cube / rod), each with `views` flat-coloured renders."""
    import datasets
    from PIL import Image

    from hf_cmah.data.features import empty_view, shape_features

    rng = np.random.default_rng(seed)
    rows = []
    for index in range(num_shapes):
        label = index % len(CLASSES)
        cloud = rng.normal(size=(num_points, 3)).astype(np.float32)
        if label == 0:
            cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)
        elif label == 1:
            cloud = np.clip(cloud, -1, 1)
        else:
            cloud *= np.array([0.1, 1.0, 0.1], dtype=np.float32)
        colour = np.zeros(3, dtype=np.uint8)
        colour[label] = 200
        thumbnail = Image.fromarray(np.full((24, 32, 3), colour, dtype=np.uint8))
        for view in range(views):
            pixels = np.full((48, 48, 3), 255, dtype=np.uint8)
            pixels[8 + view : 40 - view, 10:38] = colour + rng.integers(0, 40, size=3, dtype=np.uint8)
            rows.append(
                {
                    "shape_id": f"s{seed}_{index:03d}",
                    "label": label,
                    "points": cloud,
                    "image": Image.fromarray(pixels),
                    "view": {**empty_view("render"), "index": view},
                    "source": "synthetic",
                    "mesh_path": "",
                    "thumbnail": thumbnail,
                }
            )
    features = shape_features(CLASSES, num_points, with_thumbnail=True)
    return datasets.Dataset.from_list(rows, features=features)


def write_synthetic_dataset(folder, train_shapes: int = 24, test_shapes: int = 12, views: int = 2):
    (folder / "data").mkdir(parents=True)
    for split, count, seed in (("train", train_shapes, 0), ("test", test_shapes, 1)):
        synthetic_split(count, views, seed).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """24 train shapes and 12 test shapes of 3 classes, 2 renders and 1 thumbnail each."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic")
