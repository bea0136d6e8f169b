"""`hf-cmah eval-curves`: one model's P@K over several query sets, each beside its random codes, in one PNG."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from hf_cmah.cli import main
from hf_cmah.evaluation.retrieval import EncodedSet, random_codes, score_retrieval


def _results_file(folder, queries: str, seed: int):
    """A results.json as `hf-cmah eval` writes it: a model whose codes carry the class, and random codes."""
    labels = np.repeat(np.arange(4), 5)
    shapes = EncodedSet(np.where(np.eye(4, 16)[labels] > 0, 1, -1).astype(np.int8), None, labels, labels.astype(str))
    noisy = shapes.codes * np.where(np.random.default_rng(seed).random(shapes.codes.shape) < 0.1, -1, 1)
    images = EncodedSet(noisy.astype(np.int8), None, labels, labels.astype(str))
    results = {
        "model/final": score_retrieval(images, shapes),
        "random-16": score_retrieval(random_codes(images, 16, 0), random_codes(shapes, 16, 1)),
    }
    folder.mkdir()
    meta = {"data": f"data/{queries}-set", "split": "test", "queries": queries, "models": ["model/final"]}
    (folder / "results.json").write_text(json.dumps({"evaluation": meta, "results": results}))
    return folder


def test_one_figure_of_every_query_set(tmp_path, capsys):
    sets = [_results_file(tmp_path / name, name, seed) for seed, name in enumerate(("thumbnail", "mask"))]
    figure = tmp_path / "curves.png"
    assert main(["eval-curves", str(sets[0]), str(sets[1] / "results.json"), "--model", "model/final",
                 "--output", str(figure)]) == 0  # fmt: skip
    assert f"wrote {figure}" in capsys.readouterr().out
    assert Image.open(figure).size[0] > 500


def test_a_missing_model_or_file_is_one_line_naming_it(tmp_path, capsys):
    folder = _results_file(tmp_path / "set", "render", 0)
    assert main(["eval-curves", str(folder), "--model", "other", "--output", str(tmp_path / "x.png")]) == 2
    assert "no model 'other'; it has model/final, random-16" in capsys.readouterr().err
    assert main(["eval-curves", str(tmp_path / "none"), "--model", "m", "--output", str(tmp_path / "x.png")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
