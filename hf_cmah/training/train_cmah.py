"""Train a CMAH model with accelerate: ``accelerate launch -m hf_cmah.training.train_cmah CONFIG.yaml``.

One loop for every device: AdamW, linear warm-up then cosine decay, mixed precision where
the device has it, gradient accumulation and clipping, and an InfoNCE (or, with ``training.loss``,
the hard contrastive loss or the label-supervised SupCon) whose negatives span every process (codes
are gathered with a differentiable all-gather, SupCon's labels with a plain one). ``model.pretrained``
fine-tunes a trained CMAH instead of training a new one. Checkpoints, ``--resume``
(same data order and the same masks, so the loss curve matches an uninterrupted run), logs and
evaluation are `hf_cmah.training.session`'s, shared with the pre-aligned trainer. See docs/TRAINING.md.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable

import torch
import torch.distributed.nn.functional as distributed_functional
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from hf_cmah import CMAHForPreTraining, CMAHProcessor
from hf_cmah.losses import contrastive_loss
from hf_cmah.training.config import TrainingConfig, expand_path
from hf_cmah.training.pairs import load_pairs
from hf_cmah.training.session import TrainingSession, make_optimizer


def get_dataloaders(config: TrainingConfig, processor: CMAHProcessor):
    """The training loader (one random view per shape, a new one every epoch), its pairs and the eval split."""
    pairs, _, eval_split = load_pairs(config, processor)
    train_dataloader = DataLoader(
        pairs,
        batch_size=config.training.batch_size,
        shuffle=True,
        drop_last=True,  # InfoNCE batches of one size; a last tiny batch would have almost no negatives
        collate_fn=pairs.collate,
        num_workers=config.data.num_workers,
    )
    return train_dataloader, pairs, eval_split


def gather_with_grad(tensor: torch.Tensor, num_processes: int) -> torch.Tensor:
    """Concatenate every process's rows; gradients flow back to the process that made them."""
    if num_processes == 1:
        return tensor
    return torch.cat(distributed_functional.all_gather(tensor), dim=0)


def masking_noise(model_config, batch_size: int, seed: int, batch_index: int, process_index: int, device):
    """Uniform noise that picks the masked patches and groups of one micro-batch.

    Drawn from a generator seeded by (seed, batch, process) rather than the global RNG, so a
    resumed run masks exactly as the uninterrupted one did.
    """
    generator = torch.Generator().manual_seed(seed + 1_000_003 * batch_index + 7_919 * process_index)
    image_noise = torch.rand(batch_size, model_config.num_patches, generator=generator)
    point_noise = torch.rand(batch_size, model_config.num_groups, generator=generator)
    return image_noise.to(device), point_noise.to(device)


def build_model(config: TrainingConfig) -> CMAHForPreTraining:
    """A new model of the preset, or the trained one of ``model.pretrained`` (with its fusion block and decoders)."""
    model_config = config.model_config()
    if config.model.pretrained is None:
        return CMAHForPreTraining(model_config)  # final/ loads as CMAHModel with AutoModel (the head is dropped)
    return CMAHForPreTraining.from_pretrained(expand_path(config.model.pretrained), config=model_config)


def pair_loss_of(config: TrainingConfig, model_config, labels: torch.Tensor | None = None) -> Callable | None:
    """The contrastive loss that ``training.loss`` puts in every term of L_c (None: the model's own InfoNCE).

    ``labels``: the classes of the gathered batch's rows, which ``supcon`` needs (the others ignore them).
    """
    train = config.training
    if train.loss == "infonce":
        return None
    return functools.partial(
        contrastive_loss, logit_scale=-math.log(model_config.contrastive_temperature), kind=train.loss,
        beta=train.hcl_beta, tau_plus=train.hcl_tau_plus, labels=labels,
    )  # fmt: skip


def training_function(config: TrainingConfig, resume: bool = False) -> dict:
    """Train (or fine-tune ``model.pretrained``), checkpoint and save ``final/``; returns the last evaluation's numbers."""
    session = TrainingSession(config, resume)
    accelerator, train = session.accelerator, config.training
    set_seed(train.seed)  # before the model: its initial weights come from the seeded RNG
    model = build_model(config)
    model_config = model.config
    pair_loss = pair_loss_of(config, model_config)  # supcon's is made per batch, from the batch's labels
    processor = CMAHProcessor.from_model_config(model_config)
    train_dataloader, pairs, eval_split = get_dataloaders(config, processor)
    optimizer = make_optimizer(model, train)
    model, optimizer, train_dataloader = session.prepare(model, optimizer, train_dataloader, processor, eval_split)
    gather_codes = functools.partial(gather_with_grad, num_processes=accelerator.num_processes)
    model.train()
    for batch in session.batches(train_dataloader, pairs.set_epoch):
        batch_size = batch["points"].shape[0]
        image_noise, point_noise = masking_noise(
            model_config, batch_size, train.seed, session.micro_batches_done, accelerator.process_index,
            accelerator.device,
        )  # fmt: skip
        if train.loss == "supcon":  # the labels of every process's rows, in the order the codes are gathered
            pair_loss = pair_loss_of(config, model_config, accelerator.gather(batch["labels"]))
        with accelerator.accumulate(model):
            output = model(
                batch["pixel_values"], batch["points"], image_noise=image_noise, point_noise=point_noise,
                gather_codes=gather_codes, pair_loss=pair_loss,
            )  # fmt: skip
            session.apply(model, optimizer, output.loss)
        losses = {
            "loss": output.loss,
            "contrastive_loss": output.contrastive_loss,
            "image_reconstruction_loss": output.image_reconstruction_loss,
            "point_reconstruction_loss": output.point_reconstruction_loss,
        }
        session.end_micro_batch(model, losses, batch_size)
    return session.finish(model)


def main(argv: list[str] | None = None) -> int:
    """``python -m hf_cmah.training.train_cmah CONFIG [--set K=V ...] [--resume]``; the config must be a CMAH one."""
    from hf_cmah.training.train import main as train_main

    return train_main(argv, family="cmah")


if __name__ == "__main__":
    sys.exit(main())
