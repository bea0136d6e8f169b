"""Train a CMAH model with accelerate: ``accelerate launch -m hf_cmah.training.train_cmah CONFIG.yaml``.

One loop for every device: AdamW, linear warm-up then cosine decay, mixed precision where
the device has it, gradient accumulation and clipping, and an InfoNCE whose negatives span
every process (codes are gathered with a differentiable all-gather). Checkpoints go to
``<output.dir>/checkpoints/step_N`` every ``output.checkpoint_every`` optimizer steps;
``--resume`` reloads the newest one and continues with the same data order and the same
masks, so the loss curve matches an uninterrupted run. See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed.nn.functional as distributed_functional
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from hf_cmah import CMAHModel, CMAHProcessor
from hf_cmah.data import group_views, load_built_dataset, select_view_rows
from hf_cmah.evaluation.retrieval import encode_images, encode_shapes, image_rows, score_retrieval, summarize
from hf_cmah.modeling.modeling_cmah import info_nce_loss
from hf_cmah.training.config import TrainingConfig, load_training_config

CHECKPOINT_PREFIX = "step_"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; nothing of that step was applied or saved."""


class TrainingProgress:
    """Optimizer steps done so far; saved in every checkpoint through ``register_for_checkpointing``."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


class EpochViews(torch.utils.data.Dataset):
    """The pairs of the current epoch (`select_view_rows`: one random view of every shape) as a torch Dataset.

    One view per shape keeps two views of a shape out of one batch, where InfoNCE would count them
    as negatives. The loader is prepared once; ``set_epoch`` swaps in the next epoch's draw, which
    depends only on (seed, epoch), so a resumed run sees the same pairs.

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


def get_dataloaders(config: TrainingConfig, processor: CMAHProcessor):
    """The training loader (one random view per shape, a new one every epoch) and the eval split."""
    dataset_dict = load_built_dataset(config.dataset_path)
    for split in (config.data.train_split, config.data.eval_split):
        if split not in dataset_dict:
            raise ValueError(f"{config.dataset_path}: no split {split!r}; it has {sorted(dataset_dict)}")
    train_split, image_column = image_rows(dataset_dict[config.data.train_split], config.data.image_kind)
    pairs = EpochViews(train_split, image_column, config.training.seed, processor, config.data.cache_gib)
    train_dataloader = DataLoader(
        pairs,
        batch_size=config.training.batch_size,
        shuffle=True,
        drop_last=True,  # InfoNCE batches of one size; a last tiny batch would have almost no negatives
        collate_fn=pairs.collate,
        num_workers=config.data.num_workers,
    )
    if len(train_dataloader) == 0:
        raise ValueError(
            f"{config.dataset_path}: split {config.data.train_split!r} has {len(pairs)} shapes, fewer than one batch "
            f"of {config.training.batch_size}"
        )
    return train_dataloader, pairs, dataset_dict[config.data.eval_split]


def gather_with_grad(tensor: torch.Tensor, num_processes: int) -> torch.Tensor:
    """Concatenate every process's rows; gradients flow back to the process that made them."""
    if num_processes == 1:
        return tensor
    return torch.cat(distributed_functional.all_gather(tensor), dim=0)


def training_loss(output, model_config, num_processes: int) -> torch.Tensor:
    """``L = L_c + L_r`` as in the model, with L_c recomputed over the codes of all processes."""
    # float32: under autocast the codes arrive in bf16/fp16, too coarse for the softmax over the batch
    gather = lambda codes: gather_with_grad(codes.float(), num_processes)  # noqa: E731
    temperature = model_config.contrastive_temperature
    image_codes, shape_codes = gather(output.image_codes), gather(output.shape_codes)
    contrastive = model_config.contrastive_weight * info_nce_loss(image_codes, shape_codes, temperature)
    if output.masked_image_codes is not None:
        contrastive = contrastive + model_config.masked_contrastive_weight * 0.5 * (
            info_nce_loss(gather(output.masked_image_codes), shape_codes, temperature)
            + info_nce_loss(gather(output.masked_shape_codes), image_codes, temperature)
        )
    return (
        contrastive
        + model_config.image_reconstruction_weight * output.image_reconstruction_loss
        + model_config.point_reconstruction_weight * output.point_reconstruction_loss
    )


def masking_noise(model_config, batch_size: int, seed: int, batch_index: int, process_index: int, device):
    """Uniform noise that picks the masked patches and groups of one micro-batch.

    Drawn from a generator seeded by (seed, batch, process) rather than the global RNG, so a
    resumed run masks exactly as the uninterrupted one did.
    """
    generator = torch.Generator().manual_seed(seed + 1_000_003 * batch_index + 7_919 * process_index)
    image_noise = torch.rand(batch_size, model_config.num_patches, generator=generator)
    point_noise = torch.rand(batch_size, model_config.num_groups, generator=generator)
    return image_noise.to(device), point_noise.to(device)


def resolve_mixed_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if PartialState().device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    steps = [int(path.name.removeprefix(CHECKPOINT_PREFIX)) for path in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")]
    return checkpoint_dir / f"{CHECKPOINT_PREFIX}{max(steps)}" if steps else None


def evaluate(accelerator: Accelerator, model, processor, eval_split, config: TrainingConfig) -> dict:
    """Retrieval on the eval split (main process, unwrapped model); returns the headline numbers."""
    unwrapped = accelerator.unwrap_model(model)
    batch_size = config.output.eval_batch_size
    queries, image_column = image_rows(eval_split, config.data.image_kind)
    with accelerator.autocast():
        images = encode_images(unwrapped, processor, queries, batch_size, image_column, progress=False)
        shapes = encode_shapes(unwrapped, processor, eval_split, batch_size, progress=False)
    model.train()
    return summarize(score_retrieval(images, shapes))


def save_model(accelerator: Accelerator, model, processor, config: TrainingConfig, folder: Path, metrics: dict):
    """A ``save_pretrained`` folder: model, processor, the training config and its eval numbers."""
    accelerator.unwrap_model(model).save_pretrained(
        folder, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(folder)
        (folder / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        (folder / "eval_results.json").write_text(json.dumps(metrics, indent=2))


def training_function(config: TrainingConfig, args: argparse.Namespace) -> None:
    output_dir = Path(config.output.dir)
    checkpoint_dir = output_dir / "checkpoints"
    resume_from = latest_checkpoint(checkpoint_dir)
    if args.resume and resume_from is None:
        raise ValueError(f"--resume: no checkpoint in {checkpoint_dir}")
    if not args.resume and resume_from is not None:
        raise ValueError(f"{checkpoint_dir} already holds checkpoints: add --resume, or set another output.dir")

    train = config.training
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(train.mixed_precision),
        # Accumulation windows never reset at epoch ends, so step N always covers the same batches.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=train.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=train.seed),
        log_with=None if config.output.report_to == "none" else config.output.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(train.seed)  # before the model: its initial weights come from the seeded RNG
    model_config = config.model_config()
    model = CMAHModel(model_config)
    processor = CMAHProcessor.from_model_config(model_config)
    train_dataloader, pairs, eval_split = get_dataloaders(config, processor)

    decay = [p for p in model.parameters() if p.ndim >= 2]  # no weight decay on biases, norms and tokens
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        foreach=True,  # one fused update over all tensors; torch picks the per-tensor loop on CPU otherwise
    )
    # Stepped once per optimizer step by this loop (not prepared: accelerate would step it per process).
    scheduler = get_cosine_schedule_with_warmup(optimizer, train.warmup_steps, train.max_steps)
    progress = TrainingProgress()
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    accelerator.register_for_checkpointing(scheduler, progress)

    accelerator.print(f"training on {accelerator.device} ({torch.get_num_threads()} CPU threads per process)")
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        accelerator.print(f"resumed from {resume_from} at step {progress.step}")
    log_path = output_dir / "train_log.jsonl"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        # A killed run may have logged past its last checkpoint; those steps are redone now.
        kept = (
            [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= progress.step]
            if (resume_from is not None and log_path.exists())
            else []
        )
        log_path.write_text("".join(line + "\n" for line in kept))
    accelerator.init_trackers(
        "cmah", config={f"{s}.{k}": str(v) for s, d in config.to_dict().items() for k, v in d.items()}
    )

    micro_batches_done = progress.step * train.gradient_accumulation_steps
    epoch, skip = divmod(micro_batches_done, len(train_dataloader))
    bar = tqdm(total=train.max_steps, initial=progress.step, disable=not accelerator.is_local_main_process)
    best_results = output_dir / "best" / "eval_results.json"
    best_score = -math.inf
    if resume_from is not None and best_results.exists():  # keep the best of the run so far
        best_score = json.loads(best_results.read_text())["image_to_shape/map@all"]
    last_log_time, samples_since_log = time.perf_counter(), 0
    metrics = {}  # the last evaluation's numbers, saved with the final model
    model.train()
    while progress.step < train.max_steps:
        pairs.set_epoch(epoch)
        train_dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
        for batch in batches:
            image_noise, point_noise = masking_noise(
                model_config,
                batch["points"].shape[0],
                train.seed,
                micro_batches_done,
                accelerator.process_index,
                accelerator.device,
            )
            micro_batches_done += 1
            with accelerator.accumulate(model):
                output = model(batch["pixel_values"], batch["points"], image_noise=image_noise, point_noise=point_noise)
                loss = training_loss(output, model_config, accelerator.num_processes)
                if not torch.isfinite(accelerator.gather(loss.detach()[None])).all():
                    raise NonFiniteLossError(
                        f"loss became {loss.item()} at step {progress.step + 1}; stopped before applying it. "
                        f"Last good checkpoint: {latest_checkpoint(checkpoint_dir) or 'none yet'}"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            samples_since_log += batch["points"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.step += 1
            bar.update(1)
            step = progress.step

            if step % config.output.log_every == 0 or step == train.max_steps:
                now = time.perf_counter()
                record = {
                    "step": step,
                    "loss": loss.item(),
                    "contrastive_loss": output.contrastive_loss.item(),
                    "image_reconstruction_loss": output.image_reconstruction_loss.item(),
                    "point_reconstruction_loss": output.point_reconstruction_loss.item(),
                    "learning_rate": scheduler.get_last_lr()[0],
                    "samples_per_second": samples_since_log / (now - last_log_time),
                }
                if accelerator.device.type == "cuda":
                    record["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                last_log_time, samples_since_log = now, 0
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                if accelerator.is_main_process:
                    with log_path.open("a") as log:
                        log.write(json.dumps(record) + "\n")

            if step % config.output.checkpoint_every == 0 or step == train.max_steps:
                accelerator.save_state(str(checkpoint_dir / f"{CHECKPOINT_PREFIX}{step}"))
                if accelerator.is_main_process:
                    kept = sorted(checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name[5:]))
                    for old in kept[: -config.output.keep_checkpoints]:
                        shutil.rmtree(old)

            every = config.output.eval_every
            if every and (step % every == 0 or step == train.max_steps):
                if accelerator.is_main_process:
                    metrics = evaluate(accelerator, model, processor, eval_split, config)
                    accelerator.log(metrics, step=step)
                    accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                    if metrics["image_to_shape/map@all"] > best_score:
                        best_score = metrics["image_to_shape/map@all"]
                        save_model(accelerator, model, processor, config, output_dir / "best", metrics)
                accelerator.wait_for_everyone()
                last_log_time = time.perf_counter()  # evaluation time is not training throughput
            if step >= train.max_steps:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    # After the loop, so a run killed between its last checkpoint and this save gets it on --resume.
    save_model(accelerator, model, processor, config, output_dir / "final", metrics)
    accelerator.end_training()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a YAML training config (hf_cmah/training/configs/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.code_bits=32 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of output.dir")
    args = parser.parse_args(argv)
    try:
        training_function(load_training_config(args.config, args.overrides), args)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        print(f"train_cmah: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
