"""Checkpoints of every training family: where they go, which one a run resumes, how many stay.

``<output.dir>/checkpoints/step_N`` holds ``accelerator.save_state`` after optimizer step N
(model, optimizer, RNG states, and every object registered for checkpointing, such as
`TrainingProgress`). A fresh run refuses a folder that holds checkpoints and ``--resume``
refuses one that holds none, so a run never silently starts over or mixes with another.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..errors import ConfigError

CHECKPOINT_PREFIX = "step_"


class TrainingProgress:
    """Optimizer steps done so far; saved in every checkpoint through ``register_for_checkpointing``."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def checkpoint_steps(checkpoint_dir: Path) -> list[int]:
    """The steps of the ``step_N`` folders in ``checkpoint_dir``, ascending (other names are ignored)."""
    names = (path.name.removeprefix(CHECKPOINT_PREFIX) for path in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*"))
    return sorted(int(name) for name in names if name.isdigit())


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest ``step_N`` folder, or None when there is none."""
    steps = checkpoint_steps(checkpoint_dir)
    return checkpoint_dir / f"{CHECKPOINT_PREFIX}{steps[-1]}" if steps else None


def checkpoint_to_resume(checkpoint_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run starts from: the newest one with ``--resume`` (which needs one), none without."""
    found = latest_checkpoint(checkpoint_dir)
    if resume and found is None:
        raise ConfigError(f"--resume: no checkpoint in {checkpoint_dir}")
    if not resume and found is not None:
        raise ConfigError(f"{checkpoint_dir} already holds checkpoints: add --resume, or set another output.dir")
    return found


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int, keep: int) -> None:
    """``save_state`` into ``step_<step>``, then delete all but the newest ``keep`` checkpoints.

    Every process writes its part first (``save_state`` ends with a barrier on some backends but
    not all), so the main process deletes only after ``wait_for_everyone``.
    """
    accelerator.save_state(str(checkpoint_dir / f"{CHECKPOINT_PREFIX}{step}"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for old in checkpoint_steps(checkpoint_dir)[:-keep]:
            shutil.rmtree(checkpoint_dir / f"{CHECKPOINT_PREFIX}{old}")
    accelerator.wait_for_everyone()


def save_model(accelerator: Accelerator, model, processor, config, folder: Path, metrics: dict) -> None:
    """A ``save_pretrained`` folder: model, processor, the training config and its eval numbers."""
    accelerator.unwrap_model(model).save_pretrained(
        folder, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(folder)
        (folder / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        (folder / "eval_results.json").write_text(json.dumps(metrics, indent=2))


__all__ = [
    "CHECKPOINT_PREFIX",
    "TrainingProgress",
    "checkpoint_steps",
    "checkpoint_to_resume",
    "latest_checkpoint",
    "save_checkpoint",
    "save_model",
]
