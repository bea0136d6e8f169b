"""Building an index from a mesh folder: labels, bad files, resume after a kill, the CLI."""

import argparse
import json

import numpy as np
import pytest
import torch
import trimesh

from hf_cmah.errors import MeshLoadError
from hf_cmah.index import ShapeIndex, build_index, commands, list_mesh_folder
from hf_cmah.index.encoding import ShapeEncoder
from hf_cmah.modeling import CMAHConfig, CMAHModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=32))


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "library"
    shapes = {
        "chair/box": trimesh.creation.box(extents=(1, 2, 1)),
        "chair/tall": trimesh.creation.box(extents=(1, 4, 1)),
        "lamp/ball": trimesh.creation.icosphere(subdivisions=2),
        "lamp/cone": trimesh.creation.cone(radius=1, height=2),
        "table/cylinder": trimesh.creation.cylinder(radius=1, height=0.3),
    }
    for name, mesh in shapes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        mesh.export(root / f"{name}.obj")
    (root / "table" / "broken.obj").write_text("this is not a mesh\n")
    return root


def test_mesh_folder_listing(library):
    records = list_mesh_folder(library)
    assert [record.shape_id for record in records][:2] == ["chair/box", "chair/tall"]
    assert {record.label for record in records} == {"chair", "lamp", "table"}


def test_build_skips_bad_files_and_finds_each_shape(model, library, tmp_path):
    index, failures = build_index(model, library, tmp_path / "index", batch_size=2, progress=False)
    assert [shape_id for shape_id, _ in failures] == ["table/broken"]
    assert len(index) == 5 and not (tmp_path / ".index.partial").exists()
    loaded = ShapeIndex.load(tmp_path / "index", model=model)
    result = loaded.search(shapes=[trimesh.load(library / "lamp" / "cone.obj")], k=1)
    assert result.distances[0] == [0]
    assert loaded.metadata.column("label").to_pylist() == ["chair", "chair", "lamp", "lamp", "table"]
    with pytest.raises(MeshLoadError, match="broken"):
        build_index(model, library, tmp_path / "strict", batch_size=2, strict=True, progress=False)


def test_killed_build_resumes_from_finished_batches(model, library, tmp_path, monkeypatch):
    calls = []
    encode_shapes = ShapeEncoder.encode_shapes

    def dies_on_third_batch(self, shapes):
        calls.append(len(shapes))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return encode_shapes(self, shapes)

    monkeypatch.setattr(ShapeEncoder, "encode_shapes", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        build_index(model, library, tmp_path / "index", batch_size=2, progress=False)
    assert sorted(path.name for path in (tmp_path / ".index.partial").glob("batch-*.npz")) == [
        "batch-000000.npz",
        "batch-000001.npz",
    ]
    calls.clear()
    monkeypatch.setattr(
        ShapeEncoder, "encode_shapes", lambda self, shapes: calls.append(1) or encode_shapes(self, shapes)
    )
    resumed, _ = build_index(model, library, tmp_path / "index", batch_size=2, progress=False)
    assert len(calls) == 1  # only the unfinished last batch was encoded again
    fresh, _ = build_index(model, library, tmp_path / "fresh", batch_size=2, progress=False)
    np.testing.assert_array_equal(resumed.codes, fresh.codes)


def run_cli(argv):
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_build_info_and_search(model, library, tmp_path, capsys):
    model.save_pretrained(tmp_path / "model")
    assert (
        run_cli(["index", "build", str(library), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ix")])
        == 1
    )
    assert "skipped table/broken" in capsys.readouterr().out
    assert run_cli(["index", "info", str(tmp_path / "ix")]) == 0
    assert '"count": 5' in capsys.readouterr().out
    code = ShapeIndex.load(tmp_path / "ix").codes[2].tobytes().hex()
    assert run_cli(["search", str(tmp_path / "ix"), "--code", code, "-k", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["shape_id"] == "lamp/ball" and found[0]["distance"] == 0
    assert found[0]["label"] == "lamp" and found[0]["source"] == str(library / "lamp" / "ball.obj")
    approximate = ["search", str(tmp_path / "ix"), "--code", code, "--backend", "approximate", "--nprobe", "1"]
    assert run_cli([*approximate, "--json"]) == 0  # 5 codes: one inverted-file cell, so the search is exhaustive
    assert '"shape_id": "lamp/ball", "distance": 0' in capsys.readouterr().out
    shape = str(library / "lamp" / "cone.obj")
    assert run_cli(["search", str(tmp_path / "ix"), "--shape", shape, "--model", str(tmp_path / "model")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("1\tlamp/cone\t0")
