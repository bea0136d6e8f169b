"""The paired training data of every family: a built dataset's train split as one (image, points) pair per shape."""

from __future__ import annotations

import datasets
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import group_views, load_built_dataset, select_view_rows
from ..data.augmentation import ImageAugmentation, sample_seed
from ..errors import ConfigError
from ..evaluation.retrieval import image_rows
from ..processing_cmah import CMAHProcessor
from .config import expand_path


class EpochViews(torch.utils.data.Dataset):
    """The pairs of the current epoch (`select_view_rows`: one random view of every shape) as a torch Dataset.

    One view per shape keeps two views of a shape out of one batch, where a contrastive loss would
    count them as negatives. The loader is prepared once; ``set_epoch`` swaps in the next epoch's
    draw, which depends only on (seed, epoch), so a resumed run sees the same pairs.

    When the split's processed tensors fit in ``cache_gib``, every row goes through the processor
    once here (it is deterministic per image and per cloud) and batches are slices of those
    tensors; otherwise each batch is decoded and processed as it is drawn. With an
    ``augmentation``, the points are cached the same way and the images are kept decoded at twice
    the model's size; each one is augmented as it is drawn, seeded by (seed, epoch, row), so every
    epoch sees new images and a resumed run the same ones.
    """

    def __init__(
        self,
        split,
        image_column: str,
        seed: int,
        processor: CMAHProcessor,
        cache_gib: float,
        augmentation: ImageAugmentation | None = None,
    ):
        self.split = split.select_columns([image_column, "points"]).with_format(
            "numpy", columns=["points"], output_all_columns=True
        )
        self.image_column = image_column
        self.labels = torch.as_tensor(split["label"], dtype=torch.long)  # for training.loss: supcon
        self.processor = processor
        self.seed = seed
        self.augmentation = augmentation
        self.views = group_views(split)
        self.cache = self._preprocess_all() if cache_size_gib(len(split), processor) <= cache_gib else None
        self.set_epoch(0)

    def _preprocess_all(self, chunk: int = 256) -> dict[str, torch.Tensor | list]:
        parts, images = [], []
        for start in tqdm(range(0, len(self.split), chunk), desc="processing the train split once", leave=False):
            rows = self.split[start : start + chunk]
            if self.augmentation is None:
                parts.append(self.processor(images=rows[self.image_column], points=rows["points"]))
            else:
                parts.append(self.processor(points=rows["points"]))
                images += [self._working_copy(image) for image in rows[self.image_column]]
        cache = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        return cache if self.augmentation is None else {**cache, "images": images}

    def _working_copy(self, image: Image.Image) -> Image.Image:
        """The decoded image at twice the model's size (alpha kept): what augmentation starts from."""
        side = 2 * self.processor.image_size
        image = image.convert("RGBA") if image.mode in ("RGBA", "LA", "PA") else image.convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        return image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.rows = select_view_rows(self.views, epoch=epoch, seed=self.seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return {**self._pair(row), "label": self.labels[row]}

    def _pair(self, row: int) -> dict:
        if self.cache is None:
            item = self.split[row]
            image = item[self.image_column]
            if self.augmentation is not None:
                image = self.augmentation(self._working_copy(image), sample_seed(self.seed, self.epoch, row))
            return {"image": image, "points": item["points"]}
        if self.augmentation is None:
            return {"pixel_values": self.cache["pixel_values"][row], "points": self.cache["points"][row]}
        image = self.augmentation(self.cache["images"][row], sample_seed(self.seed, self.epoch, row))
        return {"image": image, "points": self.cache["points"][row]}

    def collate(self, items: list[dict]) -> dict:
        """``pixel_values``, ``points`` and the shapes' class ``labels`` of a batch of items."""
        labels = torch.stack([item["label"] for item in items])
        if self.cache is None:
            images, points = [item["image"] for item in items], [item["points"] for item in items]
            return {**self.processor(images=images, points=points, return_tensors="pt"), "labels": labels}
        batch = {"points": torch.stack([item["points"] for item in items]), "labels": labels}
        if self.augmentation is None:
            batch["pixel_values"] = torch.stack([item["pixel_values"] for item in items])
        else:
            batch["pixel_values"] = self.processor(images=[item["image"] for item in items])["pixel_values"]
        return batch


def cache_size_gib(rows: int, processor: CMAHProcessor) -> float:
    """Memory of every row's float32 ``pixel_values`` and ``points``."""
    per_row = 3 * processor.image_size**2 + 3 * processor.num_points
    return rows * per_row * 4 / 2**30


def load_pairs(config, processor: CMAHProcessor):
    """``(EpochViews of the train rows, those rows, the eval split)``: the train split of ``data.path`` and of
    every ``data.extra_train`` dataset, the eval split of ``data.path`` only (evaluation stays on held-out data)."""
    dataset_dict = _load_splits(config.dataset_path, (config.data.train_split, config.data.eval_split))
    train_split, image_column = image_rows(dataset_dict[config.data.train_split], config.data.image_kind)
    if config.data.extra_train:
        parts = [(config.dataset_path, train_split, image_column)]
        for path, kind in config.data.extra_train.items():
            extra = _load_splits(expand_path(path), (config.data.train_split,))[config.data.train_split]
            parts.append((expand_path(path), *image_rows(extra, kind)))
        train_split, image_column = combined_train_rows(parts), "image"
    augmentation = config.image_augmentation()
    pairs = EpochViews(train_split, image_column, config.training.seed, processor, config.data.cache_gib, augmentation)
    if len(pairs) < config.training.batch_size:
        raise ConfigError(
            f"{config.dataset_path}: split {config.data.train_split!r} has {len(pairs)} shapes, fewer than one batch "
            f"of {config.training.batch_size} (training.batch_size)"
        )
    return pairs, train_split, dataset_dict[config.data.eval_split]


def _load_splits(path: str, splits: tuple[str, ...]):
    dataset_dict = load_built_dataset(path)
    for split in splits:
        if split not in dataset_dict:
            raise ConfigError(f"{path}: no split {split!r}; it has {sorted(dataset_dict)}")
    return dataset_dict


def combined_train_rows(parts: list[tuple[str, datasets.Dataset, str]]) -> datasets.Dataset:
    """The train rows of several built datasets as one: ``image``, ``points``, ``label`` and ``shape_id``.

    ``label`` is a `ClassLabel` over the union of the datasets' class names (a name is one class in
    every dataset, so PSB's chair and Pix3D's chair are one class for ``training.loss: supcon``);
    ``shape_id`` is prefixed with the dataset's number, so equal ids stay apart.
    """
    names = list(dict.fromkeys(name for _, split, _ in parts for name in split.features["label"].names))
    union = datasets.ClassLabel(names=names)
    rows = []
    for number, (_, split, column) in enumerate(parts):
        part = split.select_columns([column, "points", "label", "shape_id"])
        if column != "image":
            part = part.rename_column(column, "image")
        to_union = [union.str2int(name) for name in split.features["label"].names]
        labels = [to_union[label] for label in part["label"]]
        part = part.remove_columns("label").add_column("label", labels).cast_column("label", union)
        prefixed = [f"{number}/{shape_id}" for shape_id in part["shape_id"]]
        rows.append(part.remove_columns("shape_id").add_column("shape_id", prefixed))
    shapes = {path: part.features["points"].shape for (path, _, _), part in zip(parts, rows)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{path}: {shape[0]} points" for path, shape in shapes.items())
        raise ConfigError(
            f"data.extra_train: every dataset needs the same points per shape ({listed}); rebuild with --points"
        )
    return datasets.concatenate_datasets(rows)


__all__ = ["EpochViews", "cache_size_gib", "combined_train_rows", "load_pairs"]
