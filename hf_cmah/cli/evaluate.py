"""`hf-cmah eval MODEL... --data DIR`: retrieval scores (mAP, P@K, PR, Acc@k) and plots of saved models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
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

    curves = subparsers.add_parser(
        "eval-curves",
        help="one model's Precision@Top-K over several query sets, each beside random codes, in one figure",
        description="Read the results.json of several `hf-cmah eval` runs (one per query set) and plot the "
        "named model's image → shape Precision@Top-K on each, with that set's random-code curve dashed.",
    )
    curves.add_argument("results", nargs="+", help="results.json files (or their folders), one per query set")
    curves.add_argument("--model", required=True, help="the model's key in each results.json (as given to eval)")
    curves.add_argument("--output", required=True, help="the PNG to write")
    curves.add_argument("--title", default="image → shape")
    curves.set_defaults(handler=run_eval_curves)


def run_eval(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoProcessor

    import hf_cmah  # noqa: F401  (registers the Auto classes)

    from ..data.storage import load_built_dataset, unique_shape_rows
    from ..evaluation.metrics import hamming_distances, rank_database
    from ..evaluation.plots import plot_precision_curves, plot_query_grid, plot_tsne
    from ..evaluation.retrieval import (
        encode_images,
        encode_shapes,
        image_rows,
        markdown_table,
        random_codes,
        score_retrieval,
    )

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


def run_eval_curves(args: argparse.Namespace) -> int:
    from ..evaluation.plots import plot_query_set_curves

    sets = {}
    for given in args.results:
        path = Path(given) / "results.json" if Path(given).is_dir() else Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"{given}: no results.json there (run `hf-cmah eval` first)")
        evaluation = json.loads(path.read_text())
        results = evaluation["results"]
        if args.model not in results:
            raise ValueError(f"{path}: no model {args.model!r}; it has {', '.join(sorted(results))}")
        random_name = next((name for name in results if name.startswith("random-")), None)
        meta = evaluation["evaluation"]
        name = f"{meta['queries']} queries, {Path(meta['data']).name} [{meta['split']}]"
        sets[name] = (
            results[args.model]["image_to_shape"]["precision_curve"],
            results[random_name]["image_to_shape"]["precision_curve"] if random_name else None,
        )
    print(f"wrote {plot_query_set_curves(sets, args.output, args.title)}")
    return 0


__all__ = ["add_commands"]
