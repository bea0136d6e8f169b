"""Fixtures of tests/index: a tiny hashing model, a mesh folder, a built dataset, a stand-in for Blender."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from hf_cmah.index import thumbnails
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


@pytest.fixture
def built_dataset():
    """A dataset shaped like `hf-cmah data build` output: two view rows per shape, a ClassLabel, an unlabelled shape."""
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features(
        {
            "shape_id": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["chair", "lamp"]),
            "points": datasets.Array2D(shape=(256, 3), dtype="float32"),
            "mesh_path": datasets.Value("string"),
        }
    )
    shapes = [("s3", 1), ("s1", 0), ("s2", -1), ("s0", 1), ("s4", 0)]
    clouds = {shape_id: rng.normal(size=(256, 3)).astype(np.float32) for shape_id, _ in shapes}
    rows = [(shape_id, label) for shape_id, label in shapes for _ in range(2)]  # a row per view
    return datasets.Dataset.from_dict(
        {
            "shape_id": [shape_id for shape_id, _ in rows],
            "label": [label for _, label in rows],
            "points": [clouds[shape_id] for shape_id, _ in rows],
            "mesh_path": [f"meshes/{shape_id}.off" for shape_id, _ in rows],
        },
        features=features,
    )


@pytest.fixture
def fake_blender(monkeypatch, tmp_path):
    """``render_batches`` as a stand-in that draws a grey square on a transparent film, in an empty render cache.

    ``fake_blender.items`` gets the RenderItems of each call and ``fake_blender.vertices`` the vertices each
    mesh was handed over with; ids put in ``fake_blender.fail`` fail to render.
    """
    stand_in = SimpleNamespace(items=[], vertices={}, fail=set())

    def render_batches(items, settings, blender=None, on_done=None):
        stand_in.items.append(list(items))
        outcome = {}
        for item in items:
            stand_in.vertices[item.id] = np.load(item.mesh)["vertices"]
            outcome[item.id] = "RuntimeError: the GPU caught fire" if item.id in stand_in.fail else None
            if outcome[item.id] is None:
                film = Image.new("RGBA", (settings.resolution, settings.resolution), (0, 0, 0, 0))
                film.paste((90, 90, 90, 255), (8, 8, settings.resolution - 8, settings.resolution - 8))
                item.out_dir.mkdir(parents=True)
                film.save(item.out_dir / "view_00.png")
                (item.out_dir / "cameras.json").write_text("{}")
            on_done(item.id, outcome[item.id])
        return outcome

    monkeypatch.setattr(thumbnails, "render_batches", render_batches)
    monkeypatch.setattr(thumbnails, "find_blender", lambda blender=None: ["blender"])
    monkeypatch.setenv("HF_CMAH_CACHE", str(tmp_path / "cache"))
    return stand_in
