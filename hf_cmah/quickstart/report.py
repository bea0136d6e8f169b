"""``report.md`` of a quickstart run: the metrics table, the evaluation's plots and a grid of the searches.

Every image link is relative to the report's folder, so the report opens in any Markdown viewer
(and on GitHub) where the run's folder is.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..evaluation.plots import plot_thumbnail_grid
from ..evaluation.retrieval import markdown_table
from .queries import Query, load_query_image

MODEL_LABEL = "trained cmah-tiny"


def plot_search_grid(index, queries: list[Query], result, path: Path) -> Path:
    """Each query, then its hits' thumbnails from the index's assets, titled with label and Hamming distance."""
    rows, relevant = [], []
    for query, ids, distances, metadata in zip(queries, result.ids, result.distances, result.metadata):
        row = []
        for shape_id, distance, meta in zip(ids, distances, metadata):
            if not meta["thumbnail"]:
                raise ValueError(f"{shape_id}: no thumbnail in the index ({meta['asset_note'] or 'none stored'})")
            with Image.open(index.asset_path(meta["thumbnail"])) as thumbnail:
                row.append((thumbnail.convert("RGB"), f"{meta['label']}, d={distance}"))
        rows.append(row)
        relevant.append([meta["label"] == query.label for meta in metadata])
    titled = [(load_query_image(query), f"{query.name}\n({query.label})") for query in queries]
    return plot_thumbnail_grid(titled, rows, relevant, path)


def write_report(
    path: Path, eval_dir: Path, model_dir: Path, queries: list[Query], skipped: list[str], grid: Path, k: int
) -> Path:
    """Write ``report.md`` beside ``grid``; ``skipped`` lists the queries left out, with why."""
    folder = path.parent
    evaluation = json.loads((eval_dir / "results.json").read_text())
    results = {
        MODEL_LABEL if name == str(model_dir) else name: scores for name, scores in evaluation["results"].items()
    }
    steps = json.loads((model_dir / "training_config.json").read_text())["training"]["max_steps"]
    lines = [
        "# hf-cmah quickstart",
        "",
        f"`cmah-tiny` trained for {steps} steps on the procedural library's train split "
        f"(`{_link(model_dir, folder)}`), scored on its test split ({evaluation['evaluation']['queries']} queries), "
        "beside random codes of the same length.",
        "",
        "## Retrieval on the test split",
        "",
        markdown_table(results),
        "",
        f"![Precision@Top-K, image → shape]({_link(eval_dir / 'precision_at_k.png', folder)})",
        "",
        f"![t-SNE of the test shapes' codes]({_link(eval_dir / 'tsne_shape_codes.png', folder)})",
        "",
        "## Searches with images the model never trained on",
        "",
        *[f"- **{query.name}** ({query.label}): {query.description}" for query in queries],
        *[f"- skipped: {note}" for note in skipped],
        "",
        f"Each row: the query, then its top {k} shapes in the index (thumbnail, label, Hamming distance); "
        "green where the label is the query's, red elsewhere.",
        "",
        f"![Each query and its top {k} shapes]({_link(grid, folder)})",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def _link(target: Path, folder: Path) -> str:
    return target.resolve().relative_to(folder.resolve()).as_posix()


__all__ = ["plot_search_grid", "write_report"]
