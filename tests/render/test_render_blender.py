"""A real Blender render of two meshes: non-empty, framed, cameras right; a bad mesh fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hf_cmah.geometry import normalize_mesh
from hf_cmah.render.launcher import RenderItem, RenderSettings, render_batches

BLENDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-blender" / "bin" / "python"
pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`"),
]


def _write_mesh(path: Path, mesh: trimesh.Trimesh) -> Path:
    mesh = normalize_mesh(mesh)
    np.savez(path, vertices=mesh.vertices.astype(np.float32), faces=mesh.faces.astype(np.int32))
    return path


def _alpha_box(path: Path) -> tuple[np.ndarray, float]:
    alpha = np.asarray(Image.open(path).convert("RGBA"))[:, :, 3]
    rows, cols = np.nonzero(alpha > 0)
    return np.array([rows.min(), rows.max(), cols.min(), cols.max()]), (alpha > 0).mean()


@pytest.mark.parametrize("engine", ["workbench", "cycles"])
def test_two_meshes_render_framed_with_cameras(tmp_path, engine):
    tall = trimesh.creation.cylinder(radius=0.2, height=3.0)
    tall.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # along y: upright
    items = [
        RenderItem("box", _write_mesh(tmp_path / "box.npz", trimesh.creation.box()), tmp_path / "box"),
        RenderItem("rod", _write_mesh(tmp_path / "rod.npz", tall), tmp_path / "rod"),
        RenderItem("broken", tmp_path / "absent.npz", tmp_path / "broken"),
    ]
    settings = RenderSettings(engine=engine, samples=4, resolution=64, num_views=2, elevations=(0.0,))
    for item in items:
        item.views = settings.views_for(item.id)
    seen = []
    outcome = render_batches(items, settings, blender=str(BLENDER_PYTHON), on_done=lambda i, e: seen.append(i))
    assert outcome["box"] is None and outcome["rod"] is None
    assert "absent.npz" in outcome["broken"]
    assert sorted(seen) == ["box", "broken", "rod"]
    for item in items[:2]:
        for index in range(2):
            box, coverage = _alpha_box(item.out_dir / f"view_{index:02d}.png")
            assert coverage > 0.02, "the object is visible"
            assert box.min() > 0 and box.max() < 63, "nothing is cut off at the border"
            assert max(box[1] - box[0], box[3] - box[2]) > 0.5 * 64, "the object fills the frame"
    cameras = json.loads((tmp_path / "box" / "cameras.json").read_text())["views"]
    for camera, direction in zip(cameras, ([0, 0, 1], [0, 0, -1])):  # azimuth 0 looks from +z (the front)
        to_world = np.array(camera["cam_to_world"])
        position = to_world[:3, 3] - np.array(camera["target"])
        assert np.allclose(position / np.linalg.norm(position), direction, atol=1e-5)
        looking = -to_world[:3, 2]  # OpenGL: the camera looks down its -z
        assert np.allclose(looking, -np.array(direction), atol=1e-5)
    rows_top, rows_bottom, cols_left, cols_right = _alpha_box(tmp_path / "rod" / "view_00.png")[0]
    assert rows_bottom - rows_top > 0.8 * 64 and cols_right - cols_left < 0.3 * 64, "y-up stands upright"


@pytest.mark.parametrize("engine", ["workbench", "cycles"])
def test_side_lighting_changes_the_shading(tmp_path, engine):
    mesh = _write_mesh(tmp_path / "box.npz", trimesh.creation.box())
    images = {}
    for lighting in ("studio", "side"):
        settings = RenderSettings(engine=engine, samples=4, resolution=48, num_views=1, lighting=lighting)
        item = RenderItem("box", mesh, tmp_path / lighting, settings.views_for("box"))
        assert render_batches([item], settings, blender=str(BLENDER_PYTHON))["box"] is None
        images[lighting] = np.asarray(Image.open(item.out_dir / "view_00.png").convert("RGBA"), dtype=np.float64)
    studio, side = images["studio"], images["side"]
    assert np.array_equal(studio[:, :, 3] > 0, side[:, :, 3] > 0), "the same view of the same shape"
    shape = studio[:, :, 3] > 0
    assert np.abs(studio[shape, :3] - side[shape, :3]).mean() > 10, "another light shades it differently"
