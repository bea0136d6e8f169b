"""`hf-cmah`, the command line: one module per command group (model, data, train, evaluate, push,
convert, index — with search —, serve); :mod:`hf_cmah.cli.main` wires them."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
