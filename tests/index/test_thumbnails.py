"""Thumbnails in an index's assets: one render per mesh (cached, resumed after a kill), failures and point files
noted, no Blender refused before any work; a real Blender render at 64 px; a built dataset keeps its meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hf_cmah.cli import main
from hf_cmah.errors import ConfigError, MeshLoadError
from hf_cmah.index import ShapeIndex, build_index, thumbnails
from hf_cmah.index.library import MESH_NOT_FOUND_NOTE, POINT_FILE_NOTE

BLENDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-blender" / "bin" / "python"


def metadata_of(index: ShapeIndex, column: str) -> dict:
    return dict(zip(index.shape_ids, index.metadata.column(column).to_pylist()))


def test_a_mesh_folder_index_renders_one_thumbnail_per_mesh_and_a_rerun_only_what_failed(
    model, library, fake_blender, tmp_path
):
    np.savetxt(library / "table" / "points.xyz", np.random.default_rng(0).normal(size=(300, 3)))
    fake_blender.fail.add("lamp/cone")
    _, failures = build_index(model, library, tmp_path / "ix", batch_size=2, with_assets=True, progress=False)

    assert [shape_id for shape_id, _ in failures] == ["table/broken"]  # unreadable: not indexed, not rendered
    (items,) = fake_blender.items  # one call: the launcher batches the meshes per Blender process
    assert [item.id for item in items] == ["chair/box", "chair/tall", "lamp/ball", "lamp/cone", "table/cylinder"]
    assert items[0].views == [{"azimuth": 30.0, "elevation": 25.0}]
    vertices = fake_blender.vertices["chair/tall"]  # normalised, its long side along y (up), as the renderer takes it
    assert np.linalg.norm(vertices, axis=1).max() == pytest.approx(1.0, abs=1e-4)
    assert np.ptp(vertices, axis=0).argmax() == 1

    loaded = ShapeIndex.load(tmp_path / "ix")
    hit = loaded.search(loaded.codes[loaded.shape_ids.index("lamp/ball")], k=1, with_metadata=True).metadata[0][0]
    with Image.open(loaded.asset_path(hit["thumbnail"])) as thumbnail:
        assert thumbnail.size == (256, 256) and thumbnail.mode == "RGB"
        assert thumbnail.getpixel((0, 0)) == (255, 255, 255) and thumbnail.getpixel((128, 128)) == (90, 90, 90)
    notes, thumbnail_names = metadata_of(loaded, "asset_note"), metadata_of(loaded, "thumbnail")
    assert notes["lamp/cone"] == "no thumbnail: the render failed (RuntimeError: the GPU caught fire)"
    assert thumbnail_names["lamp/cone"] is None and metadata_of(loaded, "mesh")["lamp/cone"]  # keeps code and GLB
    assert notes["table/points"] == POINT_FILE_NOTE and thumbnail_names["table/points"] is None
    assert sum(name is not None for name in thumbnail_names.values()) == 4

    build_index(model, library, tmp_path / "again", batch_size=2, with_assets=True, progress=False)
    assert [item.id for item in fake_blender.items[-1]] == ["lamp/cone"]  # the others come from the render cache

    (library / "table" / "broken.obj").unlink()
    with pytest.raises(MeshLoadError, match="lamp/cone: the thumbnail render failed"):
        build_index(model, library, tmp_path / "strict", with_assets=True, strict=True, progress=False)


def test_a_build_killed_while_rendering_resumes_with_the_meshes_not_rendered_yet(
    model, library, fake_blender, tmp_path, monkeypatch
):
    fake = thumbnails.render_batches

    def killed_after_two(items, settings, blender=None, on_done=None):
        fake(items[:2], settings, blender, on_done)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(thumbnails, "render_batches", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_index(model, library, tmp_path / "ix", batch_size=2, with_assets=True, progress=False)
    assert (tmp_path / ".ix.partial").is_dir()
    monkeypatch.setattr(thumbnails, "render_batches", fake)
    index, _ = build_index(model, library, tmp_path / "ix", batch_size=2, with_assets=True, progress=False)
    assert [item.id for item in fake_blender.items[-1]] == ["lamp/ball", "lamp/cone", "table/cylinder"]
    assert all(metadata_of(index, "thumbnail").values())


def test_without_blender_an_assets_build_stops_before_encoding_and_says_how_to_fix_it(
    model, library, tmp_path, monkeypatch
):
    from hf_cmah.render import launcher

    monkeypatch.setattr(launcher, "_project_roots", lambda: [])
    monkeypatch.delenv("HF_CMAH_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"make blender-env.*; or build without thumbnails .*--no-thumbnails"):
        build_index(model, library, tmp_path / "ix", with_assets=True, progress=False)
    assert not (tmp_path / ".ix.partial").exists()  # nothing was encoded
    model.save_pretrained(tmp_path / "model")
    build = ["index", "build", str(library), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ix")]
    assert main([*build, "--assets"]) == 2
    assert main([*build, "--assets", "--no-thumbnails"]) == 1  # 1: table/broken was skipped
    assert ShapeIndex.load(tmp_path / "ix").metadata.column("thumbnail").null_count == 5


def test_a_built_dataset_keeps_the_mesh_files_it_finds_and_says_which_it_did_not(
    model, built_dataset, fake_blender, tmp_path, capsys
):
    meshes = tmp_path / "library" / "meshes"
    meshes.mkdir(parents=True)
    trimesh.creation.box().export(meshes / "s0.off")
    trimesh.creation.cone(radius=1, height=2).export(meshes / "s1.off")
    (meshes / "s2.off").write_text("OFF\nnot a mesh\n")
    root = str(tmp_path / "library")
    index, _ = build_index(model, built_dataset, tmp_path / "ix", with_assets=True, mesh_root=root, progress=False)

    glbs = {shape_id: trimesh.load(index.asset_path(name)) for shape_id, name in metadata_of(index, "mesh").items()}
    assert len(trimesh.util.concatenate(list(glbs["s0"].geometry.values())).faces) == 12  # the box itself
    assert all(isinstance(next(iter(glbs[s].geometry.values())), trimesh.PointCloud) for s in ("s2", "s3", "s4"))
    notes = metadata_of(index, "asset_note")
    assert notes["s0"] is notes["s1"] is None and notes["s3"] == notes["s4"] == MESH_NOT_FOUND_NOTE
    assert notes["s2"].startswith(str(meshes / "s2.off")) and notes["s2"].endswith(": the GLB holds the point cloud")
    assert [item.id for item in fake_blender.items[-1]] == ["s0", "s1"]  # no images: the meshes found are rendered
    assert metadata_of(index, "source")["s0"] == "meshes/s0.off"  # as the dataset names it

    folder = tmp_path / "built"
    built_dataset.to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    (folder / "build_info.json").write_text("{}")
    model.save_pretrained(tmp_path / "model")
    build = ["index", "build", str(folder), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "cli")]
    assert main([*build, "--assets", "--no-thumbnails"]) == 0
    out = capsys.readouterr().out
    assert f"5 shapes: {MESH_NOT_FOUND_NOTE} (s0, s1, s2, …)" in out
    assert f"(mesh_path looked for under {Path.cwd()}; --mesh-root sets that folder)" in out
    assert main([*build, "--assets", "--mesh-root", root]) == 0
    assert f"2 shapes: {MESH_NOT_FOUND_NOTE} (s3, s4)" in capsys.readouterr().out


@pytest.mark.blender
@pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`")
def test_blender_renders_the_thumbnails_once_on_white(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_CMAH_CACHE", str(tmp_path / "cache"))
    library = tmp_path / "library"
    library.mkdir()
    trimesh.creation.box(extents=(1, 2, 1)).export(library / "box.obj")
    trimesh.creation.cone(radius=1, height=2).export(library / "cone.obj")
    options = {"with_assets": True, "thumbnail_size": 64, "blender": str(BLENDER_PYTHON), "progress": False}
    index, _ = build_index(model, library, tmp_path / "ix", **options)
    for name in index.metadata.column("thumbnail").to_pylist():
        pixels = np.asarray(Image.open(index.asset_path(name)))  # [64, 64, 3]
        assert pixels.shape == (64, 64, 3) and (pixels[0, 0] == 255).all()  # composited on white
        assert 0.05 < (pixels < 250).any(axis=-1).mean() < 0.9  # the shape is there and inside the frame
    monkeypatch.setattr(thumbnails, "render_batches", lambda *args, **kwargs: pytest.fail("rendered again"))
    again, _ = build_index(model, library, tmp_path / "again", **options)
    assert again.metadata.column("thumbnail").to_pylist() == index.metadata.column("thumbnail").to_pylist()
