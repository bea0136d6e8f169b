"""The paired training data of every family: a built dataset's train split as one (image, points) pair per shape."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..data import group_views, load_built_dataset, select_view_rows
from ..errors import ConfigError
from ..evaluation.retrieval import image_rows
from ..processing_cmah import CMAHProcessor


class EpochViews(torch.utils.data.Dataset):
    """The pairs of the current epoch (`select_view_rows`: one random view of every shape) as a torch Dataset.

    One view per shape keeps two views of a shape out of one batch, where a contrastive loss would
    count them as negatives. The loader is prepared once; ``set_epoch`` swaps in the next epoch's
    draw, which depends only on (seed, epoch), so a resumed run sees the same pairs.

    When the split's processed tensors fit in ``cache_gib``, every row goes through the processor
    once here (it is deterministic per image and per cloud) and batches are slices of those
    tensors; otherwise each batch is decoded and processed as it is drawn.
    """

    def __init__(self, split, image_column: str, seed: int, processor: CMAHProcessor, cache_gib: float):
        self.split = split.select_columns([image_column, "points"]).with_format(
            "numpy", columns=["points"], output_all_columns=True
        )
        self.image_column = image_column
        self.processor = processor
        self.seed = seed
        self.views = group_views(split)
        self.cache = self._preprocess_all() if cache_size_gib(len(split), processor) <= cache_gib else None
        self.set_epoch(0)

    def _preprocess_all(self, chunk: int = 256) -> dict[str, torch.Tensor]:
        parts = []
        for start in tqdm(range(0, len(self.split), chunk), desc="processing the train split once", leave=False):
            rows = self.split[start : start + chunk]
            parts.append(self.processor(images=rows[self.image_column], points=rows["points"], return_tensors="pt"))
        return {key: torch.cat([part[key] for part in parts]) for key in ("pixel_values", "points")}

    def set_epoch(self, epoch: int) -> None:
        self.rows = select_view_rows(self.views, epoch=epoch, seed=self.seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        if self.cache is not None:
            return {key: tensor[row] for key, tensor in self.cache.items()}
        item = self.split[row]
        return {"image": item[self.image_column], "points": item["points"]}

    def collate(self, items: list[dict]) -> dict:
        if self.cache is not None:
            return {key: torch.stack([item[key] for item in items]) for key in ("pixel_values", "points")}
        return self.processor(
            images=[item["image"] for item in items], points=[item["points"] for item in items], return_tensors="pt"
        )


def cache_size_gib(rows: int, processor: CMAHProcessor) -> float:
    """Memory of every row's float32 ``pixel_values`` and ``points``."""
    per_row = 3 * processor.image_size**2 + 3 * processor.num_points
    return rows * per_row * 4 / 2**30


def load_pairs(config, processor: CMAHProcessor):
    """``(EpochViews of the train split, the train rows of data.image_kind, the eval split)`` of ``data.path``."""
    dataset_dict = load_built_dataset(config.dataset_path)
    for split in (config.data.train_split, config.data.eval_split):
        if split not in dataset_dict:
            raise ConfigError(f"{config.dataset_path}: no split {split!r}; it has {sorted(dataset_dict)}")
    train_split, image_column = image_rows(dataset_dict[config.data.train_split], config.data.image_kind)
    pairs = EpochViews(train_split, image_column, config.training.seed, processor, config.data.cache_gib)
    if len(pairs) < config.training.batch_size:
        raise ConfigError(
            f"{config.dataset_path}: split {config.data.train_split!r} has {len(pairs)} shapes, fewer than one batch "
            f"of {config.training.batch_size} (training.batch_size)"
        )
    return pairs, train_split, dataset_dict[config.data.eval_split]


__all__ = ["EpochViews", "cache_size_gib", "load_pairs"]
