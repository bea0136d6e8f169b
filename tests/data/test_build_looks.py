"""Rendered builds show each asset as it is (its own materials) and record how every view was made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hf_cmah.cli.main import main
from hf_cmah.data import load_built_dataset

BLENDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-blender" / "bin" / "python"
pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`"),
]


def _library(root: Path) -> Path:
    """crate/: a blue OBJ + MTL; checker/: a textured GLB; plain/: an OFF (no materials at all)."""
    for folder in ("crate", "checker", "plain"):
        (root / folder).mkdir(parents=True)
    box = trimesh.creation.box(extents=[1.0, 0.6, 0.8])
    box.export(root / "crate" / "crate.obj", include_texture=False)
    obj = root / "crate" / "crate.obj"
    obj.write_text("mtllib crate.mtl\nusemtl crate\n" + obj.read_text())
    (root / "crate" / "crate.mtl").write_text("newmtl crate\nKd 0.1 0.2 0.9\n")
    cells = (np.indices((32, 32)) // 8).sum(0) % 2
    pixels = np.where(cells[..., None] == 1, [220, 30, 30], [30, 200, 40]).astype(np.uint8)
    textured = trimesh.creation.box().subdivide()
    uv = np.stack([textured.vertices[:, 0] + textured.vertices[:, 2], textured.vertices[:, 1]], 1) * 0.5 + 0.5
    textured.visual = trimesh.visual.TextureVisuals(uv=uv % 1.0, image=Image.fromarray(pixels))
    textured.export(root / "checker" / "checker.glb")
    trimesh.creation.icosphere(subdivisions=1).export(root / "plain" / "ball.off")
    return root


def test_build_renders_assets_with_their_materials_and_records_each_view(tmp_path, capsys):
    library = _library(tmp_path / "library")
    out = tmp_path / "built"
    args = ["data", "build", "meshfolder", str(library), "--out", str(out), "--test-fraction", "0", "--points", "64"]
    args += ["--views", "3", "--engine", "mixed", "--samples", "2", "--resolution", "48", "--lighting", "random"]
    args += ["--roll-jitter", "20", "--fov-jitter", "5", "--blender", str(BLENDER_PYTHON), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    rows = load_built_dataset(out)["train"]
    views = {}
    for row in rows:
        views.setdefault(row["shape_id"], []).append(row)
    looks = {shape: {row["view"]["look"] for row in shape_rows} for shape, shape_rows in views.items()}
    assert looks == {
        "crate/crate": {"importer:obj"},
        "checker/checker": {"importer:gltf"},
        "plain/ball": {"vertex_colors"},
    }
    every_view = [row["view"] for row in rows]
    assert {view["engine"] for view in every_view} <= {"cycles", "workbench"}
    assert {view["lighting"] for view in every_view} <= {"studio", "side", "sun_sky", "soft_box", "low_key"}
    assert len({view["lighting"] for view in every_view}) > 1 and any(view["roll"] != 0 for view in every_view)
    crate = np.asarray(views["crate/crate"][0]["image"].convert("RGB"), dtype=np.int16)
    shown = crate[(crate < 250).any(axis=-1)]
    assert (shown[:, 2] > shown[:, 0] + 30).mean() > 0.6, "the crate is the blue of its material"
    checker = np.asarray(views["checker/checker"][0]["image"].convert("RGB"), dtype=np.int16)
    assert ((checker[..., 0] > checker[..., 1] + 60).sum() > 20) and (
        (checker[..., 1] > checker[..., 0] + 60).sum() > 20
    )


def test_jobs_split_the_render_and_leave_the_build_unchanged(tmp_path, capsys, monkeypatch):
    from hf_cmah.data import build

    calls = []
    real = build.render_batches

    def recording(items, *args):
        calls.append((len(items), args[-1]))  # the last positional argument is jobs
        return real(items, *args)

    monkeypatch.setattr(build, "render_batches", recording)
    folders = {}
    for jobs in ("1", "3"):
        out = folders[jobs] = tmp_path / f"jobs-{jobs}"
        args = ["data", "build", "procedural", "--per-category", "1", "--views", "1", "--resolution", "32"]
        args += ["--points", "32", "--engine", "workbench", "--blender", str(BLENDER_PYTHON), "--no-progress"]
        monkeypatch.setenv("HF_CMAH_CACHE", str(tmp_path / f"cache-{jobs}"))  # render again, not from the cache
        assert main([*args, "--jobs", jobs, "--out", str(out)]) == 0, capsys.readouterr().err
    assert calls == [(10, 1), (10, 3)]
    one, three = (load_built_dataset(folders[jobs])["train"] for jobs in ("1", "3"))
    assert one["shape_id"] == three["shape_id"]
    for first, second in zip(one["image"], three["image"]):
        assert np.array_equal(np.asarray(first), np.asarray(second)), "the same pixels from one or three processes"
    info = (folders["3"] / "build_info.json").read_text()
    assert "jobs" not in info, "how it was rendered is not what was built"
