"""`hf-cmah model init` + `hf-cmah encode`: codes printed for files equal the Python API's."""

from __future__ import annotations

import json

import numpy as np
import torch
import trimesh
from PIL import Image

from hf_cmah import CMAHModel, CMAHProcessor, pack_codes
from hf_cmah.cli import main
from hf_cmah.geometry import load_points


def test_init_then_encode_files(tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["model", "init", "--preset", "cmah-tiny", "--code-bits", "16", "--out", str(model_dir)]) == 0
    image_path = tmp_path / "query.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image_path)
    mesh_path = tmp_path / "cone.obj"
    trimesh.creation.cone(0.5, 1.0).export(mesh_path)
    capsys.readouterr()

    assert main(["encode", str(model_dir), "--image", str(image_path), "--shape", str(mesh_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["kind"], line["bits"]) for line in lines] == [("image", 16), ("shape", 16)]

    model, processor = CMAHModel.from_pretrained(model_dir).eval(), CMAHProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        expected = pack_codes(model.get_shape_codes(processor(points=load_points(mesh_path, 512))["points"]))[0]
    assert lines[1]["code"] == bytes(expected).hex()


def test_encode_reports_a_missing_file_without_traceback(tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["model", "init", "--out", str(model_dir)])
    assert main(["encode", str(model_dir), "--shape", str(tmp_path / "missing.off")]) == 2
    error = capsys.readouterr().err
    assert "missing.off" in error and "Traceback" not in error
