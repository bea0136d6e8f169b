"""Train or evaluate a pre-aligned dual encoder: ``accelerate launch training/train_prealigned.py CONFIG.yaml``.

Fine-tunes a converted OpenShape / ULIP-2 model (``model.pretrained``) or trains a preset from
scratch (``model.preset``) with InfoNCE or the hard contrastive loss (``hf_cmah.losses``),
optionally on hard-neighbour batches (rebuilt every epoch from the current shape embeddings),
with either tower, or both (projections only), frozen. ``training.epochs: 0`` only evaluates:
the zero-shot retrieval path (shape library through the shape tower, queries through the image
tower). Evaluation: image→shape Acc@1 / Acc@10 (the query's own shape) and mAP (same class).

Data: the PSB mini subset (``data.psb``: ``../shared/data/psb_v1_mini``, official train / test
split), paired image = the PSB's own 160×120 thumbnail render of each model, points sampled
from the mesh with ``hf_cmah.geometry``. Prepared once into ``data.cache`` (an ``.npz``).
Checkpoints: ``<output.dir>/checkpoints/epoch_N`` after every epoch; ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from hf_cmah.convert.common import CLIP_MEAN, CLIP_STD
from hf_cmah.errors import ConfigError, HFCMAHError
from hf_cmah.evaluation.metrics import cosine_distances, retrieval_metrics
from hf_cmah.geometry import load_points
from hf_cmah.losses import HardNeighbourBatchSampler, contrastive_loss
from hf_cmah.modeling import PreAlignedShapeConfig, PreAlignedShapeModel

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the learned temperature at 1/100
EPOCH_PREFIX = "epoch_"


# ----------------------------------------------------------------------------- configuration
@dataclass
class ModelSection:
    preset: str | None = "prealigned-tiny"
    pretrained: str | None = None  # a save_pretrained folder (e.g. from `hf-cmah convert`)
    overrides: dict = field(default_factory=dict)  # top-level PreAlignedShapeConfig fields


@dataclass
class DataSection:
    psb: str = "../shared/data/psb_v1_mini"
    cache: str = "~/.cache/hf-cmah/prealigned"
    sampled_points: int = 2048  # points sampled per mesh; each epoch draws num_points of them


@dataclass
class TrainingSection:
    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    max_grad_norm: float = 1.0
    loss: str = "infonce"  # "infonce" or "hcl"
    hcl_beta: float = 1.0
    hcl_tau_plus: float = 0.0
    hard_neighbour_batches: bool = False
    seeds_per_batch: int = 4
    freeze_image_tower: bool = False
    freeze_shape_tower: bool = False
    projections_only: bool = False
    point_jitter: float = 0.01


@dataclass
class OutputSection:
    dir: str = "runs/prealigned"
    eval_batch_size: int = 64
    eval_every: int = 0  # epochs; 0 = only at the end


@dataclass
class TrainConfig:
    model: ModelSection
    data: DataSection
    training: TrainingSection
    output: OutputSection


def _section(cls, values: dict, name: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def load_config(path: str | Path, overrides: list[str]) -> TrainConfig:
    """Read the YAML config, then apply ``section.key=value`` overrides (values parsed as YAML)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for override in overrides:
        key, sep, value = override.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"override {override!r}: expected section.key=value")
        data.setdefault(section, {})[name] = yaml.safe_load(value)
    sections = {"model": ModelSection, "data": DataSection, "training": TrainingSection, "output": OutputSection}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}")
    config = TrainConfig(**{name: _section(cls, data.get(name) or {}, name) for name, cls in sections.items()})
    if config.training.loss not in ("infonce", "hcl"):
        raise ConfigError(f"training.loss must be 'infonce' or 'hcl', got {config.training.loss!r}")
    return config


# ----------------------------------------------------------------------------- data
def _psb_root(psb: Path, cache: Path) -> Path:
    """The folder holding ``benchmark/`` and ``labels.csv``, unpacking the mini archive once."""
    if (psb / "benchmark").is_dir():
        return psb
    archives = sorted(psb.glob("*.tar.xz"))
    if not archives:
        raise ConfigError(f"data.psb: {psb} holds neither benchmark/ nor a .tar.xz archive")
    target = cache / "psb"
    unpacked = target / archives[0].name.removesuffix(".tar.xz")
    if not (unpacked / "benchmark").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0], "r:xz") as archive:
            archive.extractall(target, filter="data")
    return unpacked


def _thumbnail(path: Path, size: int) -> np.ndarray:
    """PSB thumbnail → white-padded square, resized: ``uint8 [3, size, size]``."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        side = max(image.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        return np.asarray(square.resize((size, size), Image.BICUBIC)).transpose(2, 0, 1).copy()


def prepare_psb(data: DataSection, image_size: int) -> dict[str, np.ndarray]:
    """Sampled points, thumbnails, ids, labels and splits of every PSB mini model (cached ``.npz``)."""
    cache = Path(data.cache).expanduser()
    cache_file = cache / f"psb-{data.sampled_points}p-{image_size}px.npz"
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    root = _psb_root(Path(data.psb).expanduser(), cache)
    rows = list(csv.DictReader((root / "labels.csv").open()))
    points, images, ids, labels, splits, skipped = [], [], [], [], [], []
    for row in tqdm(rows, desc="PSB meshes"):
        mesh = root / row["off_path"]
        try:
            cloud = load_points(mesh, data.sampled_points, seed=0)
        except HFCMAHError as error:  # a mesh that cannot be sampled is reported, the rest go on
            skipped.append(f"{mesh}: {error}")
            continue
        points.append(cloud)
        images.append(_thumbnail(mesh.with_name(f"{mesh.stem}_thumb.jpg"), image_size))
        ids.append(f"m{row['model_id']}")
        labels.append(row["class_path"])
        splits.append(row["split"])
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    prepared = {
        "points": np.stack(points).astype(np.float32),
        "images": np.stack(images),
        "ids": np.array(ids),
        "labels": np.array(labels),
        "splits": np.array(splits),
    }
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(".partial.npz")
    np.savez(partial, **prepared)
    partial.rename(cache_file)
    return prepared


def normalise_images(images: np.ndarray) -> torch.Tensor:
    """``uint8 [B, 3, H, W]`` → CLIP-normalised float pixel values."""
    pixels = images.astype(np.float32) / 255.0
    mean, std = (np.asarray(values, np.float32)[:, None, None] for values in (CLIP_MEAN, CLIP_STD))
    return torch.from_numpy((pixels - mean) / std)


class PairDataset(Dataset):
    """(image, points) pairs; each epoch draws ``num_points`` of the sampled points per shape."""

    def __init__(self, images: np.ndarray, points: np.ndarray, num_points: int, jitter: float, seed: int):
        self.pixel_values = normalise_images(images)
        self.points = torch.from_numpy(points)
        self.num_points = num_points
        self.jitter = jitter
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 1_000_003 + index)
        choice = torch.randperm(self.points.shape[1], generator=generator)[: self.num_points]
        cloud = self.points[index, choice]
        if self.jitter > 0:
            cloud = cloud + self.jitter * torch.randn(cloud.shape, generator=generator)
        return {"pixel_values": self.pixel_values[index], "points": cloud}


# ----------------------------------------------------------------------------- model
def build_model(section: ModelSection) -> PreAlignedShapeModel:
    if section.pretrained:
        return PreAlignedShapeModel.from_pretrained(Path(section.pretrained).expanduser(), **section.overrides)
    if not section.preset:
        raise ConfigError("model: give a preset or a pretrained folder")
    return PreAlignedShapeModel(PreAlignedShapeConfig.from_preset(section.preset, **section.overrides))


def apply_freezing(model: PreAlignedShapeModel, train: TrainingSection) -> list[torch.nn.Module]:
    """Turn off gradients of frozen towers; returns them (they stay in eval mode: frozen BatchNorm)."""
    frozen = []
    if train.freeze_image_tower or train.projections_only:
        frozen.append(model.vision_model)
    if train.freeze_shape_tower or train.projections_only:
        frozen.append(model.shape_model)
    for module in frozen:
        module.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("training: every parameter is frozen")
    return frozen


@torch.no_grad()
def encode(model: PreAlignedShapeModel, tensors: torch.Tensor, kind: str, batch_size: int, device) -> torch.Tensor:
    method = model.get_image_embeds if kind == "image" else model.get_shape_embeds
    parts = [method(tensors[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(tensors), batch_size)]
    return torch.cat(parts)


def evaluate(model: PreAlignedShapeModel, data: dict, num_points: int, batch_size: int, device) -> dict:
    """Image→shape retrieval on the test split: queries = thumbnails, database = the test shapes."""
    test = data["splits"] == "test"
    was_training = model.training
    model.eval()
    images = normalise_images(data["images"][test])
    points = torch.from_numpy(data["points"][test][:, :num_points].copy())
    image_embeds = encode(model, images, "image", batch_size, device)
    shape_embeds = encode(model, points, "shape", batch_size, device)
    model.train(was_training)
    labels, ids = data["labels"][test], data["ids"][test]
    metrics = retrieval_metrics(
        cosine_distances(image_embeds.numpy(), shape_embeds.numpy()),
        labels,
        labels,
        ids,
        ids,
        map_k=(),
        precision_k=(1, 10),
    )
    return {key: metrics[key] for key in ("acc@1", "acc@10", "map@all", "p@10", "num_queries")}


# ----------------------------------------------------------------------------- training
def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob(f"{EPOCH_PREFIX}*"), key=lambda p: int(p.name.removeprefix(EPOCH_PREFIX)))
    return found[-1] if found else None


def training_function(config: TrainConfig, args: argparse.Namespace) -> dict:
    train = config.training
    output = Path(config.output.dir)
    accelerator = Accelerator(project_config=ProjectConfiguration(project_dir=str(output)))
    set_seed(train.seed)  # before building the model: its initialisation draws from the seed
    model = build_model(config.model)
    num_points = model.config.shape_config.num_points
    data = prepare_psb(config.data, model.config.vision_config.image_size)
    is_train = data["splits"] == "train"
    dataset = PairDataset(
        data["images"][is_train], data["points"][is_train], num_points, train.point_jitter, train.seed
    )
    started = time.perf_counter()
    if train.epochs == 0:
        model.to(accelerator.device)
        metrics = evaluate(model, data, num_points, config.output.eval_batch_size, accelerator.device)
        return {"epochs": 0, "seconds": time.perf_counter() - started, **metrics}

    frozen = apply_freezing(model, train)
    sampler = HardNeighbourBatchSampler(len(dataset), train.batch_size, train.seeds_per_batch, seed=train.seed)
    # Without hard-neighbour batches the sampler never gets embeddings: plain random batches.
    loader = DataLoader(dataset, batch_sampler=sampler)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=train.learning_rate, weight_decay=train.weight_decay
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, train.warmup_steps, train.epochs * len(sampler))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    checkpoints = output / "checkpoints"
    first_epoch = 0
    if args.resume and (resume := latest_checkpoint(checkpoints)) is not None:
        accelerator.load_state(str(resume))
        first_epoch = int(resume.name.removeprefix(EPOCH_PREFIX)) + 1
        accelerator.print(f"resumed from {resume}")
    unwrapped = accelerator.unwrap_model(model)
    history = []
    for epoch in range(first_epoch, train.epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        if train.hard_neighbour_batches and epoch > 0:
            unwrapped.eval()
            sampler.set_embeddings(
                encode(unwrapped, torch.stack([dataset[i]["points"] for i in range(len(dataset))]), "shape",
                       config.output.eval_batch_size, accelerator.device)
            )  # fmt: skip
        model.train()
        for module in frozen:
            module.eval()
        losses = []
        for batch in tqdm(loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, leave=False):
            output_ = model(pixel_values=batch["pixel_values"], points=batch["points"])
            loss = contrastive_loss(
                output_.image_embeds, output_.shape_embeds, unwrapped.logit_scale, train.loss,
                beta=train.hcl_beta, tau_plus=train.hcl_tau_plus,
            )  # fmt: skip
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}; nothing of this step was applied")
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            with torch.no_grad():
                unwrapped.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(float(loss.detach()))
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - started}
        every = config.output.eval_every
        if every and (epoch + 1) % every == 0 and epoch + 1 < train.epochs:
            record |= evaluate(unwrapped, data, num_points, config.output.eval_batch_size, accelerator.device)
        history.append(record)
        accelerator.print(json.dumps(record))
        accelerator.save_state(str(checkpoints / f"{EPOCH_PREFIX}{epoch}"))
        if accelerator.is_main_process:
            for old in checkpoints.glob(f"{EPOCH_PREFIX}*"):
                if old.name != f"{EPOCH_PREFIX}{epoch}":
                    shutil.rmtree(old)  # keep the newest epoch only
    seconds = time.perf_counter() - started
    metrics = evaluate(unwrapped, data, num_points, config.output.eval_batch_size, accelerator.device)
    unwrapped.save_pretrained(
        output / "model", is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    accelerator.end_training()
    return {"epochs": train.epochs, "seconds": seconds, "history": history, **metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a YAML config (hf_cmah/training/configs/prealigned-*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. training.loss=hcl")
    parser.add_argument("--resume", action="store_true", help="continue from the newest epoch checkpoint")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        result = training_function(config, args)
    except HFCMAHError as error:
        print(f"train_prealigned: error: {error}", file=sys.stderr)
        return 2
    summary = {"config": {k: asdict(v) for k, v in vars(config).items()}, "result": result}
    out = Path(config.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
