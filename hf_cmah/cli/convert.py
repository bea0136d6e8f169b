"""`hf-cmah convert openshape|ulip2 CHECKPOINT --out DIR`: heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the original checkpoint file (.pt)")
    parser.add_argument("--out", required=True, help="folder to write the save_pretrained model into")
    parser.add_argument(
        "--clip",
        default=None,
        help="CLIP checkpoint (Hub id or folder) for the image tower; defaults to the one the shape tower was aligned to",
    )
    parser.add_argument("--code-bits", type=int, default=None, help="add a binarisation head of K bits")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow arbitrary pickled objects in the checkpoint (only for files you trust)",
    )


def _convert_openshape(args: argparse.Namespace) -> int:
    from ..convert.openshape import convert_openshape

    out, report = convert_openshape(
        args.checkpoint, args.out, clip=args.clip, variant=args.variant, code_bits=args.code_bits,
        trust_pickle=args.trust_pickle,
    )  # fmt: skip
    print(report.summary())
    print(f"wrote {out}")
    return 0


def _convert_ulip2(args: argparse.Namespace) -> int:
    from ..convert.ulip2 import convert_ulip2

    out, report = convert_ulip2(
        args.checkpoint, args.out, clip=args.clip, code_bits=args.code_bits, trust_pickle=args.trust_pickle
    )
    print(report.summary())
    print(f"wrote {out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser("convert", help="convert OpenShape / ULIP-2 checkpoints to hf-cmah models")
    targets = convert.add_subparsers(dest="source", required=True, metavar="SOURCE")
    openshape = targets.add_parser("openshape", help="an OpenShape PPAT checkpoint (G/14, L/14, B/32)")
    _common_arguments(openshape)
    openshape.add_argument(
        "--variant", choices=("g14", "l14", "b32"), default=None, help="detected from the key layout when omitted"
    )
    openshape.set_defaults(handler=_convert_openshape)
    ulip2 = targets.add_parser("ulip2", help="a ULIP-2 Point-BERT checkpoint")
    _common_arguments(ulip2)
    ulip2.set_defaults(handler=_convert_ulip2)
