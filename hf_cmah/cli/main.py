"""The `hf-cmah` command line: one module of this package per command group, wired here.

Each module registers its sub-commands with an ``add_commands(subparsers)`` function and
imports heavy libraries inside its handlers, so `hf-cmah --help` stays fast. Errors of
hf_cmah (``ValueError`` subclasses) print as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules of this package that define `add_commands(subparsers)`, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("model", "data", "train", "evaluate", "push", "convert", "index", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-cmah", description="Image ⇄ 3D-shape retrieval (CMAH, dual encoders).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f".{module_name}", __package__).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"hf-cmah {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hf-cmah {args.command}: interrupted", file=sys.stderr)
        return 130
