"""`hf-cmah train CONFIG`: runs `hf_cmah.training.train` (the loop of the config's model family) through `accelerate launch`."""

from __future__ import annotations

import argparse
import subprocess
import sys


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a CMAH or pre-aligned model (the config's model.family says which) through `accelerate launch`",
        description="Train a model from a YAML config: model.family cmah (the default) or prealigned picks the loop.",
    )
    train.add_argument("config", help="a training config YAML, or a bundled config's name (tiny-cpu, modelnet40-64, …)")
    train.add_argument("--accelerate-config", help="an accelerate config (training/accelerate/*.yaml)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.set_defaults(handler=run_train)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_train(args: argparse.Namespace) -> int:
    # --quiet: a failing run ends with its own one-line error, not the launcher's CalledProcessError traceback.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--quiet"]
    if args.accelerate_config:
        command += ["--config_file", args.accelerate_config]
    elif not _has_cuda():
        # Without --cpu, accelerate gives a CPU run one OpenMP thread; with it, one per physical core.
        command += ["--cpu", "--num_processes", "1"]
    command += ["-m", "hf_cmah.training.train", args.config]
    command += [f"--set={override}" for override in args.overrides]
    command += ["--resume"] if args.resume else []
    return subprocess.call(command)
