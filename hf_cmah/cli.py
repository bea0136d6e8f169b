"""The `hf-cmah` command line: one sub-command group per role folder.

Each role registers its sub-commands with an ``add_commands(subparsers)`` function in its
own ``commands`` module and imports heavy libraries inside the handlers, so `hf-cmah --help`
stays fast. Errors of hf_cmah (``ValueError`` subclasses) print as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define `add_commands(subparsers)`; each role adds its own line.
COMMAND_MODULES: list[str] = [
    "hf_cmah.model_commands",
    "hf_cmah.data.commands",
    "hf_cmah.evaluation.commands",
    "hf_cmah.convert.commands",
    "hf_cmah.index.commands",
    "hf_cmah.service.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-cmah", description="Image ⇄ 3D-shape retrieval (CMAH, dual encoders).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
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


if __name__ == "__main__":
    sys.exit(main())
