"""Where a quickstart run puts each thing, under one folder (``outputs/quickstart/`` unless ``--out``)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_OUT = Path("outputs/quickstart")


def quickstart_outputs(out: Path = DEFAULT_OUT) -> dict[str, Path]:
    """The paths of a run's outputs; ``model``, ``index`` and ``query`` are what the web demo serves."""
    out = Path(out)
    return {
        "steps": out / "quickstart.json",  # the settings each step was made with
        "dataset": out / "dataset",
        "train": out / "train",
        "model": out / "train" / "final",
        "eval": out / "eval",
        "library": out / "library",  # the test meshes as files, what the index is built from
        "index": out / "index",
        "query": out / "query.png",  # a held-out render: the demo's example query
        "relit_query": out / "query-relit.png",
        "grid": out / "search_grid.png",
        "report": out / "report.md",
    }


__all__ = ["DEFAULT_OUT", "quickstart_outputs"]
