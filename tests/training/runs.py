"""Helpers of the training tests: a run's logged losses, and a copy of a run as if it had been killed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def losses(run: Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of every line of the run's ``train_log.jsonl``."""
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())]


def killed_copy(run: Path, newest_checkpoint: str, logged_steps: int) -> Path:
    """A copy of ``run`` as a kill would leave it: without its newest checkpoint and ``final/``, its log
    cut after ``logged_steps`` lines (steps the newest remaining checkpoint does not hold)."""
    killed = run.parent / "killed"
    shutil.copytree(run, killed)
    shutil.rmtree(killed / "checkpoints" / newest_checkpoint)
    shutil.rmtree(killed / "final")
    log = killed / "train_log.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:logged_steps]))
    return killed
