"""Train any model family: ``accelerate launch -m hf_cmah.training.train CONFIG.yaml`` (what ``hf-cmah train`` runs).

The config's ``model.family`` (``cmah`` when absent, or ``prealigned``) picks the loop:
`hf_cmah.training.train_cmah` or `hf_cmah.training.train_prealigned`, which can also be
launched directly. A bad config, a missing file or a wrong ``--resume`` ends in one error line
and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import ConfigError
from .config import load_training_config
from .session import NonFiniteLossError

TRAINERS = {"cmah": "hf_cmah.training.train_cmah", "prealigned": "hf_cmah.training.train_prealigned"}


def parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a YAML training config, or a bundled config's name (hf_cmah/training/configs)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.code_bits=32 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of output.dir")
    # training/train_prealigned.py took its overrides as bare SECTION.KEY=VALUE words until 2026-12.
    parser.add_argument("legacy_overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.legacy_overrides:
        warnings.warn(
            f"{prog}: bare overrides ({' '.join(args.legacy_overrides)}) are deprecated and will be removed in the "
            "next release; write --set " + " --set ".join(args.legacy_overrides),
            FutureWarning,
            stacklevel=2,
        )
        args.overrides = args.legacy_overrides + args.overrides
    return args


def main(argv: list[str] | None = None, family: str | None = None) -> int:
    """Load the config, check its family (when this entry point is a family's own), run its trainer."""
    prog = f"train_{family}" if family else "hf-cmah train"
    args = parse_args(argv, prog)
    try:
        config = load_training_config(args.config, args.overrides)
        if family is not None and config.family != family:
            raise ConfigError(
                f"{config.source}: model.family is {config.family!r}, not {family!r}: run it with `hf-cmah train` "
                f"or `-m {TRAINERS[config.family]}`"
            )
        importlib.import_module(TRAINERS[config.family]).training_function(config, args.resume)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:  # hf_cmah's errors are ValueErrors
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
