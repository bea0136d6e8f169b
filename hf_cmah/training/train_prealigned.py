"""Train or evaluate a pre-aligned dual encoder: ``accelerate launch -m hf_cmah.training.train_prealigned CONFIG.yaml``.

Fine-tunes a converted OpenShape / ULIP-2 model (``model.pretrained``) or trains a preset from
scratch (``model.preset``) with InfoNCE or the hard contrastive loss (``training.loss``,
`hf_cmah.losses`), optionally on hard-neighbour batches rebuilt every epoch from the current
shape embeddings, with either tower or both (projections only) frozen. ``training.max_steps: 0``
only evaluates and saves: the zero-shot path. Data, checkpoints, ``--resume``, logs and
evaluation are `hf_cmah.training.session`'s, as for CMAH. See docs/PREALIGNED.md.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from hf_cmah.convert.common import processor_for
from hf_cmah.evaluation.retrieval import encode_shapes
from hf_cmah.losses import HardNeighbourBatchSampler, contrastive_loss
from hf_cmah.modeling import PreAlignedShapeModel
from hf_cmah.processing_cmah import CMAHProcessor
from hf_cmah.training.config import PreAlignedTrainingConfig
from hf_cmah.training.pairs import load_pairs
from hf_cmah.training.session import TrainingSession, eval_mode, make_optimizer

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the learned temperature at 1/100


def build_model(config: PreAlignedTrainingConfig) -> tuple[PreAlignedShapeModel, CMAHProcessor]:
    """The preset from scratch, or the pretrained folder with its own processor (CLIP normalisation when absent)."""
    model_config = config.model_config()
    if config.model.pretrained is None:
        return PreAlignedShapeModel(model_config), processor_for(model_config)
    folder = Path(config.model.pretrained).expanduser()
    model = PreAlignedShapeModel.from_pretrained(folder, config=model_config)
    has_processor = (folder / "preprocessor_config.json").is_file()
    return model, CMAHProcessor.from_pretrained(folder) if has_processor else processor_for(model_config)


def freeze(model: PreAlignedShapeModel, train) -> None:
    """Turn off gradients (and BatchNorm statistics: eval mode) of the frozen towers."""
    frozen = []
    if train.freeze_image_tower or train.projections_only:
        frozen.append(model.vision_model)
    if train.freeze_shape_tower or train.projections_only:
        frozen.append(model.shape_model)
    if model.code_projection is not None:
        frozen.append(model.code_projection)  # random-hyperplane hashing: no loss here trains it
    for module in frozen:
        module.requires_grad_(False).eval()
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{model.config.name_or_path or 'model'}: every parameter is frozen")


class NeighbourBatches:
    """The hard-neighbour lists of the current epoch, kept in checkpoints so a resumed epoch batches alike."""

    def __init__(self, sampler: HardNeighbourBatchSampler, enabled: bool):
        self.sampler, self.enabled, self.epoch = sampler, enabled, 0

    def set_epoch(self, epoch: int, model, processor, pairs, train_split, batch_size: int) -> None:
        """Batches of ``epoch``; from epoch 1 on (hard-neighbour runs) by the shape embeddings at its start."""
        self.sampler.set_epoch(epoch)
        if not self.enabled or epoch == 0 or epoch == self.epoch:
            return
        with eval_mode(model):
            encoded = encode_shapes(model, processor, train_split, batch_size, progress=False)
        row_of = {shape_id: row for row, shape_id in enumerate(encoded.shape_ids)}
        pair_ids = np.asarray(train_split["shape_id"])[pairs.rows]  # the shape of every pair, in pair order
        self.sampler.set_embeddings(torch.from_numpy(encoded.embeds[[row_of[i] for i in pair_ids]]))
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "neighbours": self.sampler.neighbours}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.sampler.neighbours = int(state["epoch"]), state["neighbours"]


def augment_points(points: torch.Tensor, num_points: int, jitter: float, generator: torch.Generator) -> torch.Tensor:
    """A random ``num_points`` of each cloud ``[B, P, C]`` plus Gaussian jitter of the xyz, drawn from ``generator``."""
    batch, pool, channels = points.shape
    if pool > num_points:
        choice = torch.stack([torch.randperm(pool, generator=generator)[:num_points] for _ in range(batch)])
        points = points.gather(1, choice.to(points.device)[..., None].expand(-1, -1, channels))  # (B, N, C)
    if jitter > 0:
        noise = jitter * torch.randn((*points.shape[:2], 3), generator=generator)
        points = torch.cat([points[..., :3] + noise.to(points.device), points[..., 3:]], dim=-1)
    return points


def training_function(config: PreAlignedTrainingConfig, resume: bool = False) -> dict:
    """Train (or, with ``max_steps: 0``, only evaluate) and save ``final/``; returns the last evaluation's numbers."""
    session = TrainingSession(config, resume)
    accelerator, train = session.accelerator, config.training
    set_seed(train.seed)  # before the model: its initial weights come from the seeded RNG
    model, processor = build_model(config)
    freeze(model.train(), train)
    num_points = model.config.shape_config.num_points
    pool = copy.copy(processor)  # the training clouds: point_pool points each, of which a step draws num_points
    pool.num_points = max(train.point_pool, num_points)
    pairs, train_split, eval_split = load_pairs(config, pool)
    sampler = HardNeighbourBatchSampler(len(pairs), train.batch_size, train.seeds_per_batch, seed=train.seed)
    neighbours = NeighbourBatches(sampler, train.hard_neighbour_batches)
    train_dataloader = DataLoader(pairs, batch_sampler=sampler, collate_fn=pairs.collate)
    optimizer = make_optimizer(model, train)
    model, optimizer, train_dataloader = session.prepare(
        model, optimizer, train_dataloader, processor, eval_split, neighbours
    )
    unwrapped = accelerator.unwrap_model(model)

    def set_epoch(epoch: int) -> None:
        pairs.set_epoch(epoch)
        neighbours.set_epoch(epoch, unwrapped, processor, pairs, train_split, config.output.eval_batch_size)

    for batch in session.batches(train_dataloader, set_epoch):
        generator = torch.Generator().manual_seed(
            train.seed + 1_000_003 * session.micro_batches_done + 7_919 * accelerator.process_index
        )  # per micro-batch, not the global RNG: a resumed run augments as the uninterrupted one did
        points = augment_points(batch["points"], num_points, train.point_jitter, generator)
        with accelerator.accumulate(model):
            output = model(pixel_values=batch["pixel_values"], points=points)
            loss = contrastive_loss(
                output.image_embeds, output.shape_embeds, unwrapped.logit_scale, train.loss,
                beta=train.hcl_beta, tau_plus=train.hcl_tau_plus, labels=batch["labels"],
            )  # fmt: skip
            session.apply(model, optimizer, loss)
            with torch.no_grad():
                unwrapped.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        session.end_micro_batch(model, {"loss": loss, "logit_scale": unwrapped.logit_scale}, points.shape[0])
    return session.finish(model)


def main(argv: list[str] | None = None) -> int:
    """``python -m hf_cmah.training.train_prealigned CONFIG [--set K=V ...] [--resume]``; a prealigned config."""
    from hf_cmah.training.train import main as train_main

    return train_main(argv, family="prealigned")


if __name__ == "__main__":
    sys.exit(main())
