"""`hf-cmah train`, `hf-cmah eval` and `hf-cmah push`: training, retrieval scores and publishing."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HEADLINE = (
    ("image_to_shape", "map@all", "i→s mAP@all"),
    ("image_to_shape", "p@10", "i→s P@10"),
    ("image_to_shape", "acc@1", "i→s Acc@1"),
    ("image_to_shape", "acc@10", "i→s Acc@10"),
    ("shape_to_image", "map@all", "s→i mAP@all"),
    ("shape_to_image", "p@10", "s→i P@10"),
    ("shape_to_image", "acc@1", "s→i Acc@1"),
)


def add_commands(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a CMAH model (runs hf_cmah.training.train_cmah through `accelerate launch`)",
        description="Train a CMAH model from a YAML config; extra arguments after the config go to the script.",
    )
    train.add_argument("config", help="a training config YAML, or a bundled config's name (tiny-cpu, modelnet40-64, …)")
    train.add_argument("--accelerate-config", help="an accelerate config (training/accelerate/*.yaml)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "eval",
        help="retrieval metrics (mAP, P@K, PR, Acc@k) and plots for one or more models",
        description=(
            "Encode a split of a saved DatasetDict with each model and score image→shape and shape→image "
            "retrieval by Hamming distance of codes (and cosine of embeddings). Writes results.json and PNG plots."
        ),
    )
    evaluate.add_argument("models", nargs="+", help="save_pretrained folders (or Hub ids) of hashing models")
    evaluate.add_argument("--data", required=True, help="a dataset folder from `hf-cmah data build` (or a Hub id)")
    evaluate.add_argument("--split", default="test", help="the split to evaluate (default: test)")
    evaluate.add_argument(
        "--queries",
        default="render",
        help="image queries: an image kind of the `view.kind` column (render, photo, …), or `thumbnail` for "
        "the thumbnail column, one per shape (default: render)",
    )
    evaluate.add_argument("--random-baseline", action="store_true", help="also score random codes of each length")
    evaluate.add_argument("--output", required=True, help="folder for results.json and the plots")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    evaluate.add_argument("--no-plots", action="store_true", help="write results.json only")
    evaluate.set_defaults(handler=run_eval)

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


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_train(args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if args.accelerate_config:
        command += ["--config_file", args.accelerate_config]
    elif not _has_cuda():
        # Without --cpu, accelerate gives a CPU run one OpenMP thread; with it, one per physical core.
        command += ["--cpu", "--num_processes", "1"]
    command += ["-m", "hf_cmah.training.train_cmah", args.config]
    command += [f"--set={override}" for override in args.overrides]
    command += ["--resume"] if args.resume else []
    return subprocess.call(command)


def markdown_table(results: dict) -> str:
    header = "| model | " + " | ".join(name for _, _, name in HEADLINE) + " |"
    lines = [header, "|" + "---|" * (len(HEADLINE) + 1)]
    for model, scores in results.items():
        cells = [f"{scores[direction][key]:.3f}" for direction, key, _ in HEADLINE]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoProcessor

    import hf_cmah  # noqa: F401  (registers the Auto classes)

    from ..data.storage import load_built_dataset, unique_shape_rows
    from .metrics import hamming_distances, rank_database
    from .plots import plot_precision_curves, plot_query_grid, plot_tsne
    from .retrieval import encode_images, encode_shapes, image_rows, random_codes, score_retrieval

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    dataset_dict = load_built_dataset(args.data)
    if args.split not in dataset_dict:
        raise ValueError(f"{args.data}: no split {args.split!r}; it has {sorted(dataset_dict)}")
    split = dataset_dict[args.split]
    queries, image_column = image_rows(split, args.queries)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results, encodings = {}, {}
    for index, name in enumerate(args.models):
        model = AutoModel.from_pretrained(name).to(device)
        processor = AutoProcessor.from_pretrained(name)
        label = name if name not in results else f"{name}-{index}"  # results are keyed by the argument as given
        images = encode_images(model, processor, queries, args.batch_size, image_column)
        shapes = encode_shapes(model, processor, split, args.batch_size)
        results[label] = score_retrieval(images, shapes)
        encodings[label] = (images, shapes)
        if args.random_baseline:
            bits = model.config.code_bits
            results[f"random-{bits}"] = score_retrieval(random_codes(images, bits, 0), random_codes(shapes, bits, 1))

    meta = {"data": args.data, "split": args.split, "queries": args.queries, "models": args.models}
    (output / "results.json").write_text(json.dumps({"evaluation": meta, "results": results}, indent=1))
    print(f"{args.data} [{args.split}], queries: {args.queries} ({len(queries)} images)")
    print(markdown_table(results))
    if args.no_plots:
        return 0

    curves = {name: scores["image_to_shape"]["precision_curve"] for name, scores in results.items()}
    plot_precision_curves(curves, output / "precision_at_k.png")
    first, (images, shapes) = next(iter(encodings.items()))
    class_names = split.features["label"].names
    plot_tsne(shapes.codes, shapes.labels, class_names, output / "tsne_shape_codes.png")
    # The grid: 6 queries spread over the set, each with its 5 nearest shapes by Hamming distance.
    picks = list(range(0, len(images.labels), max(1, len(images.labels) // 6)))[:6]
    ranking = rank_database(hamming_distances(images.codes[picks], shapes.codes))[:, :5]
    shape_rows = split.select(unique_shape_rows(split)).with_format("numpy", columns=["points"])
    plot_query_grid(
        [queries[i][image_column] for i in picks],
        [[shape_rows[int(j)]["points"] for j in row] for row in ranking],
        shapes.labels[ranking] == images.labels[picks][:, None],
        output / "query_grid.png",
    )
    print(f"wrote {output / 'results.json'}, precision_at_k.png, tsne_shape_codes.png, query_grid.png ({first})")
    return 0


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


__all__ = ["add_commands"]
