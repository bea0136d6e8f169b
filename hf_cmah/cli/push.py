"""`hf-cmah push MODEL REPO_ID`: a model card (with eval results) written into the folder, then the upload."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    push = subparsers.add_parser(
        "push",
        help="write a model card (with eval results) into a model folder and upload it to the Hub",
    )
    push.add_argument("model", help="a save_pretrained folder (with its processor)")
    push.add_argument("repo_id", help="Hub repository, e.g. user/cmah-tiny-64")
    push.add_argument("--results", help="results.json from `hf-cmah eval` that scored this model")
    push.add_argument(
        "--results-key", help="the model's key in results.json (default: the model path as given to eval)"
    )
    push.add_argument("--dataset", action="append", default=[], help="Hub id of a training/eval dataset (repeatable)")
    push.add_argument("--dataset-name", default="", help="human name of the evaluation data, for the model-index")
    push.add_argument("--private", action="store_true")
    push.add_argument("--card-only", action="store_true", help="write README.md into the folder, upload nothing")
    push.set_defaults(handler=run_push)


def run_push(args: argparse.Namespace) -> int:
    from ..hub import push_model, write_model_card

    results = None
    if args.results:
        scored = json.loads(Path(args.results).read_text())["results"]
        key = args.results_key or args.model
        if key not in scored:
            raise ValueError(f"{args.results}: no results for {key!r}; it has {sorted(scored)} (use --results-key)")
        results = scored[key]
    card = write_model_card(
        args.model, args.repo_id, results=results, datasets=args.dataset, dataset_name=args.dataset_name
    )
    print(f"wrote {card}")
    if args.card_only:
        return 0
    url = push_model(args.model, args.repo_id, private=args.private)
    print(f"pushed {args.model} to {url}")
    return 0
