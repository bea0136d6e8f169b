"""What every training loop does around its optimizer steps, whatever the model family.

`TrainingSession` owns the accelerator and the run's bookkeeping: the resume rule, loading the
checkpoint, the data order of each epoch (``skip_first_batches`` on resume), the learning-rate
schedule, ``train_log.jsonl``, checkpoints every ``output.checkpoint_every`` steps, evaluation
on the main process every ``output.eval_every`` steps (best model in ``best/``) and the final
``save_pretrained``. A family's loop (`train_cmah`, `train_prealigned`) only builds its model
and data and computes its loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, ProjectConfiguration
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..evaluation.retrieval import encode_images, encode_shapes, image_rows, score_retrieval, summarize
from .allocator import keep_freed_memory
from .checkpoints import TrainingProgress, checkpoint_to_resume, latest_checkpoint, save_checkpoint, save_model
from .config import TrainingConfig


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; nothing of that step was applied or saved."""


def resolve_mixed_precision(requested: str) -> str:
    """``auto``: bf16 on a GPU that has it, fp16 on other GPUs, none on CPU."""
    if requested != "auto":
        return requested
    if PartialState().device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def make_optimizer(model: torch.nn.Module, train) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms, tokens and scales."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        fused=True,  # one kernel over all tensors, CPU and GPU: cmah-tiny's 249 tensors in 4-5 ms, foreach 17-20 ms
    )


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode inside; afterwards every module's own mode back (frozen towers stay in eval)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


class TrainingSession:
    """One run of any family: accelerator, resume, epochs, logs, checkpoints, evaluation, saves."""

    def __init__(self, config: TrainingConfig, resume: bool):
        keep_freed_memory()  # before the first batch: the step's large buffers then never page-fault again
        self.config = config
        self.output_dir = Path(config.output.dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.resume_from = checkpoint_to_resume(self.checkpoint_dir, resume)
        train = config.training
        self.accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(train.mixed_precision),
            # Accumulation windows never reset at epoch ends, so step N always covers the same batches.
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=train.gradient_accumulation_steps, sync_with_dataloader=False
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=train.seed),
            log_with=None if config.output.report_to == "none" else config.output.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")
            ),
        )
        self.progress = TrainingProgress()
        self.micro_batches_done = 0
        self.metrics: dict = {}  # the last evaluation's numbers, saved with the final model

    def prepare(self, model, optimizer, dataloader, processor, eval_split, *extra_state):
        """``accelerator.prepare`` the model, optimizer and loader, then load the checkpoint to resume.

        The learning-rate schedule is made here and not prepared: accelerate would step it once
        per process. ``extra_state`` are further objects with ``state_dict`` saved in checkpoints.
        """
        train = self.config.training
        self.processor, self.eval_split = processor, eval_split
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, train.warmup_steps, train.max_steps)
        model, optimizer, dataloader = self.accelerator.prepare(model, optimizer, dataloader)
        self.accelerator.register_for_checkpointing(self.scheduler, self.progress, *extra_state)
        self.accelerator.print(
            f"training on {self.accelerator.device} ({torch.get_num_threads()} CPU threads per process)"
        )
        if self.resume_from is not None:
            self.accelerator.load_state(str(self.resume_from))
            self.accelerator.print(f"resumed from {self.resume_from} at step {self.progress.step}")
        self.micro_batches_done = self.progress.step * train.gradient_accumulation_steps
        self._start_log()
        return model, optimizer, dataloader

    def _start_log(self) -> None:
        self.log_path = self.output_dir / "train_log.jsonl"
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            # A killed run may have logged past its last checkpoint; those steps are redone now.
            kept = []
            if self.resume_from is not None and self.log_path.exists():
                lines = self.log_path.read_text().splitlines()
                kept = [line for line in lines if json.loads(line)["step"] <= self.progress.step]
            self.log_path.write_text("".join(line + "\n" for line in kept))
        hyper_parameters = {f"{s}.{k}": str(v) for s, d in self.config.to_dict().items() for k, v in d.items()}
        self.accelerator.init_trackers(self.config.family, config=hyper_parameters)
        best = self.output_dir / "best" / "eval_results.json"
        # On resume, keep the best of the run so far.
        self.best_score = (
            json.loads(best.read_text())[self.config.selection_metric]
            if self.resume_from and best.exists()
            else -math.inf
        )
        self.bar = tqdm(
            total=self.config.training.max_steps,
            initial=self.progress.step,
            disable=not self.accelerator.is_local_main_process,
        )
        self.last_log_time, self.samples_since_log = time.perf_counter(), 0

    def batches(self, dataloader, set_epoch: Callable[[int], None]) -> Iterator[dict]:
        """Micro-batches until ``training.max_steps``, epoch after epoch; a resumed run continues mid-epoch.

        ``set_epoch(epoch)`` runs before each epoch (the family's per-epoch data: view draw, neighbours).
        """
        epoch, skip = divmod(self.micro_batches_done, len(dataloader))
        while self.progress.step < self.config.training.max_steps:
            set_epoch(epoch)
            dataloader.set_epoch(epoch)
            for batch in self.accelerator.skip_first_batches(dataloader, skip) if skip else dataloader:
                if self.progress.step >= self.config.training.max_steps:
                    return
                yield batch
                self.micro_batches_done += 1
            epoch, skip = epoch + 1, 0

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN / infinite loss of any process is applied."""
        if not torch.isfinite(self.accelerator.gather(loss.detach()[None])).all():
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.progress.step + 1}; stopped before applying it. "
                f"Last good checkpoint: {latest_checkpoint(self.checkpoint_dir) or 'none yet'}"
            )

    def apply(self, model, optimizer, loss: torch.Tensor) -> None:
        """One micro-batch's update, inside ``accelerator.accumulate``: check the loss, backward, clip, step."""
        self.check_finite(loss)
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(model.parameters(), self.config.training.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()

    def end_micro_batch(self, model, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        """After ``optimizer.step``: on each optimizer step, schedule, log, checkpoint and evaluate."""
        self.samples_since_log += batch_size * self.accelerator.num_processes
        if not self.accelerator.sync_gradients:
            return
        self.scheduler.step()
        self.progress.step += 1
        self.bar.update(1)
        step, output = self.progress.step, self.config.output
        last = step == self.config.training.max_steps
        if step % output.log_every == 0 or last:
            self._log(step, losses)
        if step % output.checkpoint_every == 0 or last:
            save_checkpoint(self.accelerator, self.checkpoint_dir, step, output.keep_checkpoints)
        if output.eval_every and (step % output.eval_every == 0 or last):
            self.evaluate(model, step)

    def _log(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        now = time.perf_counter()
        record = {
            "step": step,
            **{name: value.item() for name, value in losses.items()},
            "learning_rate": self.scheduler.get_last_lr()[0],
            "samples_per_second": self.samples_since_log / (now - self.last_log_time),
        }
        if self.accelerator.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        self.last_log_time, self.samples_since_log = now, 0
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}")
        if self.accelerator.is_main_process:
            with self.log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")

    def evaluate(self, model, step: int) -> None:
        """Retrieval on the eval split (main process, unwrapped model); a new best is saved in ``best/``."""
        if self.accelerator.is_main_process:
            # base_model: the retriever inside a pre-training model (CMAHForPreTraining.cmah), else the model itself
            retriever = self.accelerator.unwrap_model(model).base_model
            self.metrics = score_model(self.accelerator, retriever, self.processor, self.eval_split, self.config)
            self.accelerator.log(self.metrics, step=step)
            self.accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()))
            if self.metrics[self.config.selection_metric] > self.best_score:
                self.best_score = self.metrics[self.config.selection_metric]
                save_model(self.accelerator, model, self.processor, self.config, self.output_dir / "best", self.metrics)
        self.accelerator.wait_for_everyone()
        self.last_log_time = time.perf_counter()  # evaluation time is not training throughput

    def finish(self, model) -> dict:
        """Save ``final/`` (evaluated first when ``max_steps`` is 0: the evaluate-only run) and end the run."""
        self.bar.close()
        if self.config.training.max_steps == 0:
            self.evaluate(model, 0)
        # After the loop, so a run killed between its last checkpoint and this save gets it on --resume.
        save_model(self.accelerator, model, self.processor, self.config, self.output_dir / "final", self.metrics)
        self.accelerator.end_training()
        return self.metrics


def score_model(accelerator: Accelerator, model, processor, eval_split, config: TrainingConfig) -> dict:
    """The headline numbers of image→shape and shape→image retrieval on ``eval_split`` (`hf_cmah.evaluation`)."""
    batch_size = config.output.eval_batch_size
    queries, image_column = image_rows(eval_split, config.data.image_kind)
    with eval_mode(model), accelerator.autocast():
        images = encode_images(model, processor, queries, batch_size, image_column, progress=False)
        shapes = encode_shapes(model, processor, eval_split, batch_size, progress=False)
    return summarize(score_retrieval(images, shapes))


__all__ = [
    "NonFiniteLossError",
    "TrainingSession",
    "eval_mode",
    "make_optimizer",
    "resolve_mixed_precision",
    "score_model",
]
