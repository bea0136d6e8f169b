"""Each builder reads a tiny fixture written here in its official layout, and says clearly what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from hf_cmah.data import collect_source
from hf_cmah.data.builders import procedural
from hf_cmah.data.builders.meshfolder import hash_split
from hf_cmah.data.builders.psb import parse_cla
from hf_cmah.errors import ConfigError, InvalidInputError


def _mesh(path, extents=(1.0, 1.0, 1.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=extents).export(path)
    return path


def _png(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 255).save(path)
    return path


def test_meshfolder_labels_from_folders_and_stable_hash_split(tmp_path):
    for name in ("chair/a.obj", "chair/sub/b.OFF", "table/c.ply", "loose.stl"):
        _mesh(tmp_path / name)
    (tmp_path / "chair" / "README.txt").write_text("not a mesh, ignored")
    source = collect_source("meshfolder", tmp_path, test_fraction=0.5)
    assert source.class_names == ["chair", "table"]
    by_id = {record.shape_id: record for record in source.records}
    assert set(by_id) == {"chair/a", "chair/sub/b", "table/c", "loose"}
    assert by_id["loose"].label is None
    assert all(record.split == hash_split(record.shape_id, 0.5, 0) for record in source.records)


def test_meshfolder_train_test_folders_give_the_split(tmp_path):
    _mesh(tmp_path / "train" / "mug" / "a.obj")
    _mesh(tmp_path / "test" / "mug" / "a.obj")
    source = collect_source("meshfolder", tmp_path)
    assert sorted((r.shape_id, r.split, r.label) for r in source.records) == [
        ("test/mug/a", "test", "mug"),
        ("train/mug/a", "train", "mug"),
    ]


def test_meshfolder_without_meshes(tmp_path):
    with pytest.raises(InvalidInputError, match="no mesh files"):
        collect_source("meshfolder", tmp_path)


def test_modelnet40_layout(tmp_path):
    _mesh(tmp_path / "airplane" / "train" / "airplane_0001.off")
    _mesh(tmp_path / "airplane" / "test" / "airplane_0627.off")
    _mesh(tmp_path / "bed" / "train" / "bed_0001.off")
    source = collect_source("modelnet40", tmp_path)
    assert source.class_names == ["airplane", "bed"]
    assert {(r.shape_id, r.split) for r in source.records} == {
        ("airplane_0001", "train"),
        ("airplane_0627", "test"),
        ("bed_0001", "train"),
    }
    assert all(r.up_axis == "z" for r in source.records) and not source.publishable
    with pytest.raises(InvalidInputError, match="not a ModelNet40 tree"):
        collect_source("modelnet40", tmp_path / "airplane" / "train")


def _shapenet55(root):
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "ShapeNet-55").mkdir()
    for name in ("02691156-aaa", "03001627-bbb"):
        np.save(root / "shapenet_pc" / f"{name}.npy", np.random.default_rng(0).normal(size=(64, 3)))
    (root / "ShapeNet-55" / "train.txt").write_text("02691156-aaa.npy\n03001627-missing.npy\n")
    (root / "ShapeNet-55" / "test.txt").write_text("03001627-bbb.npy\n")


def test_shapenet55_split_lists_points_and_meshes(tmp_path):
    _shapenet55(tmp_path)
    _mesh(tmp_path / "core" / "02691156" / "aaa" / "models" / "model_normalized.obj")
    source = collect_source("shapenet55", tmp_path, meshes=tmp_path / "core")
    assert {(r.shape_id, r.split, r.label) for r in source.records} == {
        ("02691156-aaa", "train", "02691156"),
        ("03001627-bbb", "test", "03001627"),
    }
    with_mesh = {r.shape_id: r.mesh_path is not None for r in source.records}
    assert with_mesh == {"02691156-aaa": True, "03001627-bbb": False}
    assert [f.shape_id for f in source.failures] == ["03001627-missing"]


def test_shapenet55_missing_split_list(tmp_path):
    _shapenet55(tmp_path)
    (tmp_path / "ShapeNet-55" / "test.txt").unlink()
    with pytest.raises(InvalidInputError, match=r"split list ShapeNet-55/test\.txt is missing"):
        collect_source("shapenet55", tmp_path)


def test_shapenetrender_crosspoint_layout(tmp_path):
    points = tmp_path / "ShapeNet" / "02691156" / "aaa.npy"
    points.parent.mkdir(parents=True)
    np.save(points, np.zeros((32, 3)))
    np.save(tmp_path / "ShapeNet" / "02691156" / "bbb.npy", np.zeros((32, 3)))
    rendering = tmp_path / "ShapeNetRendering" / "02691156" / "aaa" / "rendering"
    _png(rendering / "00.png")
    _png(rendering / "01.png")
    (rendering / "rendering_metadata.txt").write_text("10 20 0 0.8 25\n30 25 0 0.9 25\n")
    source = collect_source("shapenetrender", tmp_path)
    (record,) = source.records
    assert record.shape_id == "02691156-aaa" and record.split == "train"
    assert [image.view["azimuth"] for image in record.images] == [10.0, 30.0]
    assert [f.shape_id for f in source.failures] == ["02691156-bbb"]


def test_pix3d_official_json(tmp_path):
    _mesh(tmp_path / "model" / "chair" / "X" / "model.obj")
    _png(tmp_path / "img" / "chair" / "0001.png", (16, 12))
    _png(tmp_path / "mask" / "chair" / "0002.png")
    entries = [
        {
            "img": "img/chair/0001.png",
            "mask": "mask/chair/0001.png",
            "model": "model/chair/X/model.obj",
            "category": "chair",
            "focal_length": 35.0,
        },
        {
            "img": "img/chair/0002.png",
            "mask": "mask/chair/0002.png",
            "model": "model/chair/X/model.obj",
            "category": "chair",
            "focal_length": 35.0,
        },
        {
            "img": "img/chair/0003.png",
            "mask": "mask/chair/0003.png",
            "model": "model/chair/X/model.obj",
            "category": "chair",
            "focal_length": 35.0,
        },
    ]
    (tmp_path / "pix3d.json").write_text(json.dumps(entries))
    source = collect_source("pix3d", tmp_path)
    (record,) = source.records
    assert record.shape_id == "chair/X" and record.label == "chair"
    assert [image.kind for image in record.images] == ["photo", "mask"]
    assert len(source.failures) == 1 and "neither photo nor mask" in source.failures[0].error
    assert source.publishable


def test_pix3d_broken_json(tmp_path):
    (tmp_path / "pix3d.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        collect_source("pix3d", tmp_path)


def test_pix3d_mini_layout(pix3d_root):
    source = collect_source("pix3d", pix3d_root)
    assert len(source.records) == 176 and not source.failures
    assert {record.split for record in source.records} == {"test"}
    assert all(image.kind == "mask" for record in source.records for image in record.images)


def _psb_tree(root):
    benchmark = root / "benchmark"
    for model_id in (5, 6, 812):
        folder = benchmark / "db" / str(model_id // 100) / f"m{model_id}"
        _mesh(folder / f"m{model_id}.off")
        _png(folder / f"m{model_id}_thumb.jpg")
    base = benchmark / "classification" / "v1" / "base"
    base.mkdir(parents=True)
    (base / "train.cla").write_text("PSB 1\n2 2\n\nanimal 0 0\n\nbee animal 2\n5\n6\n")
    (base / "test.cla").write_text("PSB 1\n1 2\n\nchair 0 2\n812\n999\n")


def test_psb_layout_official_split_leaf_labels_and_thumbnails(tmp_path):
    _psb_tree(tmp_path)
    source = collect_source("psb", tmp_path)
    assert {(r.shape_id, r.split, r.label) for r in source.records} == {
        ("m5", "train", "bee"),
        ("m6", "train", "bee"),
        ("m812", "test", "chair"),
    }
    assert all(r.thumbnail is not None and r.thumbnail.name.endswith("_thumb.jpg") for r in source.records)
    assert [f.shape_id for f in source.failures] == ["m999"]
    assert source.class_names == ["bee", "chair"] and not source.publishable


def test_psb_cla_errors(tmp_path):
    bad = tmp_path / "bad.cla"
    bad.write_text("PSB 1\n1 3\nbee 0 3\n5\n6\n")
    with pytest.raises(InvalidInputError, match="should list 3 model ids"):
        parse_cla(bad)
    bad.write_text("OFF\n")
    with pytest.raises(InvalidInputError, match=r"not a PSB \.cla file"):
        parse_cla(bad)


def test_psb_mini_official_split(psb_root):
    source = collect_source("psb", psb_root)
    splits = [record.split for record in source.records]
    assert (splits.count("train"), splits.count("test")) == (427, 857)
    assert not source.failures
    assert all(record.thumbnail is not None for record in source.records)


def test_procedural_is_deterministic_and_varied():
    assert len(procedural.CATEGORIES) >= 10
    for category in procedural.CATEGORIES:
        first, again = procedural.make_shape(category, 0), procedural.make_shape(category, 0)
        assert np.array_equal(first.vertices, again.vertices)
        other = procedural.make_shape(category, 1)
        assert first.vertices.shape != other.vertices.shape or not np.allclose(first.vertices, other.vertices)
        assert first.area > 0
    assert not np.allclose(procedural.make_shape("mug", 0, seed=1).vertices, procedural.make_shape("mug", 0).vertices)


def test_procedural_split_and_options():
    source = collect_source("procedural", None, per_category=5)
    assert len(source.records) == 5 * len(procedural.CATEGORIES)
    assert sum(record.split == "test" for record in source.records) == len(procedural.CATEGORIES)
    with pytest.raises(ConfigError, match="does not take option"):
        collect_source("procedural", None, meshes="x")
    with pytest.raises(ConfigError, match="expected one of"):
        collect_source("nope", None)
