"""The quickstart's run: its options, its steps in order, the searches and the closing lines."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

from ..data.storage import BUILD_INFO
from .outputs import DEFAULT_OUT, quickstart_outputs
from .queries import Query, find_psb, held_out_render, load_query_image, psb_thumbnail, relit_render
from .report import plot_search_grid, write_report
from .steps import Step, StepRunner, run_action, run_cli

# The first line of the package docstring, which `--help` shows (imported from there, it made an import circle).
DESCRIPTION = "`make quickstart`: the whole path from meshes to a search, with the same commands a user types."
TRAIN_CONFIG = "tiny-cpu"  # a config the package ships (hf_cmah/training/configs/), found from a wheel too
TRAIN_BATCH_SIZE = 32  # tiny-cpu's
VIEWS, RESOLUTION = 4, 128
TOP_K = 5
EVAL_OUTPUTS = ("results.json", "precision_at_k.png", "tsne_shape_codes.png", "query_grid.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hf_cmah.quickstart", description=DESCRIPTION)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--per-category", type=int, default=20, help="procedural shapes per category (at least 3)")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--psb", type=Path, default=None, help="the psb_v1_mini folder (default: $HF_CMAH_PSB, else "
                        "../shared/data/psb_v1_mini beside the repository; skipped when there is none)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.per_category < 3:  # the last 20 % of each category is the test split: 3 shapes give it one
        parser.error("--per-category: at least 3, so that every category has a test shape")
    if args.steps < 1:
        parser.error("--steps: at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = quickstart_outputs(args.out)
    runner = StepRunner(paths["steps"])
    for step, action in _reusable_steps(args, paths):
        runner.run(step, action)
    queries, skipped = run_action("queries", lambda: _queries(paths, args.psb))
    index, result = run_action("search", lambda: _search(paths["index"], paths["model"], queries))
    run_action("report", lambda: _report(paths, queries, skipped, index, result))
    _print_next_steps(paths, args.out)
    return 0


def _reusable_steps(args: argparse.Namespace, paths: dict[str, Path]) -> list[tuple[Step, Callable[[], None]]]:
    """The steps worth reusing, in order: each with its output, settings and completeness check, and its work."""
    dataset, train, model, evaluation, index = (paths[name] for name in ("dataset", "train", "model", "eval", "index"))
    library_settings = {"per_category": args.per_category, "seed": args.seed, "views": VIEWS, "resolution": RESOLUTION}
    return [
        (
            Step("library", dataset, library_settings, lambda: (dataset / BUILD_INFO).is_file()),
            lambda: _build_library(dataset, args.per_category, args.seed),
        ),
        (
            # save_pretrained writes eval_results.json last: a final/ without it is a save that was cut short.
            Step("train", train, {"steps": args.steps, "seed": args.seed}, (model / "eval_results.json").is_file),
            lambda: _train(dataset, train, args.steps, args.seed),
        ),
        (
            Step("eval", evaluation, {}, lambda: all((evaluation / name).is_file() for name in EVAL_OUTPUTS)),
            lambda: _evaluate(model, dataset, evaluation),
        ),
        (
            Step("index", index, {}, (index / "manifest.json").is_file),
            lambda: _build_index(dataset, paths["library"], index, model, args.seed),
        ),
    ]


def _build_library(dataset_dir: Path, per_category: int, seed: int) -> None:
    run_cli("library", ["data", "build", "procedural", "--per-category", str(per_category), "--views", str(VIEWS),
            "--engine", "workbench", "--resolution", str(RESOLUTION), "--seed", str(seed), "--out", str(dataset_dir)])  # fmt: skip


def _evaluate(model_dir: Path, dataset_dir: Path, eval_dir: Path) -> None:
    run_cli("eval", ["eval", str(model_dir), "--data", str(dataset_dir), "--split", "test", "--random-baseline",
            "--output", str(eval_dir)])  # fmt: skip


def _train(dataset_dir: Path, train_dir: Path, steps: int, seed: int) -> None:
    """Train, or resume the checkpoints a killed run of the same settings left."""
    from ..data import load_built_dataset
    from ..data.storage import unique_shape_rows
    from ..training.checkpoints import latest_checkpoint

    # The config's batch of 32 pairs, or the whole train split when it has fewer shapes (a small --per-category).
    batch_size = min(TRAIN_BATCH_SIZE, len(unique_shape_rows(load_built_dataset(dataset_dir)["train"])))
    checkpoint = latest_checkpoint(train_dir / "checkpoints")
    if checkpoint is not None:
        print(f"resuming train from {checkpoint}", flush=True)
    run_cli("train", ["train", TRAIN_CONFIG, "--set", f"data.path={dataset_dir.resolve()}",
            "--set", f"output.dir={train_dir}", "--set", f"training.max_steps={steps}", "--set",
            f"training.seed={seed}", "--set", f"training.batch_size={batch_size}",
            *(["--resume"] if checkpoint is not None else [])])  # fmt: skip


def _build_index(dataset_dir: Path, library_dir: Path, index_dir: Path, model_dir: Path, seed: int) -> None:
    """Write the test meshes as a folder of OBJ files (as a user's library is) and index it with its assets."""
    shutil.rmtree(library_dir, ignore_errors=True)
    count = _write_test_library(dataset_dir, library_dir, seed)
    print(f"\nwrote the {count} test meshes to {library_dir}")
    run_cli("index", ["index", "build", str(library_dir), "--model", str(model_dir), "--out", str(index_dir),
            "--assets"])  # fmt: skip


def _write_test_library(dataset_dir: Path, library_dir: Path, seed: int) -> int:
    """Each test shape's mesh as ``<category>/<shape id>.obj``, y-up."""
    import numpy as np
    import trimesh

    from ..data import load_built_dataset
    from ..data.builders.procedural import make_shape

    test = load_built_dataset(dataset_dir)["test"]
    names = test.features["label"].names
    rows = {row["shape_id"]: row for row in test.select_columns(["shape_id", "label", "mesh_path"])}
    for shape_id, row in rows.items():
        category, index = row["mesh_path"].removeprefix("procedural://").split("/")
        target = library_dir / names[row["label"]] / f"{shape_id}.obj"
        target.parent.mkdir(parents=True, exist_ok=True)
        mesh = make_shape(category, int(index), seed=seed)  # generated z-up; files are y-up
        mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        mesh.export(target)
    return len(rows)


def _queries(paths: dict[str, Path], psb: Path | None) -> tuple[list[Query], list[str]]:
    """The query images, and a note for each one left out."""
    from ..data import load_built_dataset

    test = load_built_dataset(paths["dataset"])["test"]
    queries = [held_out_render(test, paths["query"]), relit_render(paths["library"], RESOLUTION, paths["relit_query"])]
    psb_root = find_psb(psb)
    if psb_root is not None:
        return [*queries, psb_thumbnail(psb_root)], []
    skipped = "the PSB thumbnail: no ../shared/data/psb_v1_mini beside the repository (nor --psb, $HF_CMAH_PSB)"
    print(f"note: skipped {skipped}", flush=True)
    return queries, [skipped]


def _search(index_dir: Path, model_dir: Path, queries: list[Query]):
    """All queries in one search; each printed with its hits, and the command that repeats it."""
    from ..index.encoding import load_retriever
    from ..index.shape_index import ShapeIndex

    index = ShapeIndex.from_pretrained(index_dir)
    index.set_model(*load_retriever(str(model_dir)))
    result = index.search(images=[load_query_image(query) for query in queries], k=TOP_K, with_metadata=True)
    for query, ids, distances, metadata in zip(queries, result.ids, result.distances, result.metadata):
        print(f"\n{query.name} ({query.label}): {query.path}")
        print(f"  the same search: hf-cmah search {index_dir} --model {model_dir} --image {query.path} -k {TOP_K}")
        for rank, (shape_id, distance, meta) in enumerate(zip(ids, distances, metadata), start=1):
            hit = "✓" if meta["label"] == query.label else " "
            print(f"  {rank}. {hit} {shape_id:<24} {meta['label']:<10} Hamming {distance}")
    return index, result


def _report(paths: dict[str, Path], queries: list[Query], skipped: list[str], index, result) -> None:
    grid = plot_search_grid(index, queries, result, paths["grid"])
    write_report(paths["report"], paths["eval"], paths["model"], queries, skipped, grid, TOP_K)


def _print_next_steps(paths: dict[str, Path], out: Path) -> None:
    demo_args = "" if out == DEFAULT_OUT else f" QUICKSTART_OUT={out}"
    print(f"\nquickstart done. The report (metrics, plots, the searches): {paths['report']}")
    print(f"Web demo on this model and index: make demo{demo_args}   (then http://127.0.0.1:7860/)")
    print("Blender add-on: make blender-addon, install dist/hf_cmah_shape_search-*.zip in Blender (Edit → Preferences")
    print("  → Get Extensions → ⌄ → Install from Disk…), keep the demo running: its URL is the add-on's default.")


__all__ = ["main"]
