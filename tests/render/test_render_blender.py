"""A real Blender render of two meshes: non-empty, framed, cameras right; a bad mesh fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from hf_cmah.geometry import normalize_mesh
from hf_cmah.render.launcher import RenderItem, RenderSettings, render_batches, render_source

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


def _checker_glb(path: Path, scale: float = 1.0, offset=(0.0, 0.0, 0.0)) -> Path:
    """A box (the unit ball's cube when ``scale`` is 1) whose faces carry a red / green checker texture."""
    cells = (np.indices((64, 64)) // 16).sum(0) % 2
    pixels = np.where(cells[..., None] == 1, [220, 30, 30], [30, 200, 40]).astype(np.uint8)
    box = trimesh.creation.box(extents=[2.0 / np.sqrt(3.0)] * 3).subdivide()
    uv = np.stack([box.vertices[:, 0] + box.vertices[:, 2], box.vertices[:, 1] + box.vertices[:, 2]], 1)
    box.visual = trimesh.visual.TextureVisuals(uv=(uv * 0.5 + 0.5) % 1.0, image=Image.fromarray(pixels))
    box.apply_scale(scale)
    box.apply_translation(offset)
    box.export(path)
    return path


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64)


@pytest.mark.parametrize("engine", ["workbench", "cycles"])
def test_an_asset_renders_with_its_own_texture_on_the_normalised_geometry(tmp_path, engine):
    # The asset is 3x the normalised cube, off centre: to_normalized must bring it onto the .npz the views frame.
    asset = _checker_glb(tmp_path / "checker.glb", scale=3.0, offset=(5.0, -2.0, 1.0))
    to_normalized = np.diag([1 / 3, 1 / 3, 1 / 3, 1.0])
    to_normalized[:3, 3] = -np.array([5.0, -2.0, 1.0]) / 3
    mesh = _write_mesh(tmp_path / "cube.npz", trimesh.creation.box(extents=[2.0 / np.sqrt(3.0)] * 3))
    looks = {}
    for materials in ("vertex", "auto"):
        settings = RenderSettings(engine=engine, samples=4, resolution=64, num_views=1, materials=materials)
        source = render_source(asset, to_normalized, settings)
        item = RenderItem("cube", mesh, tmp_path / materials, settings.views_for("cube"), source)
        assert render_batches([item], settings, blender=str(BLENDER_PYTHON))["cube"] is None
        looks[materials] = _rgba(item.out_dir / "view_00.png")
        camera = json.loads((item.out_dir / "cameras.json").read_text())["views"][0]
        assert camera["look"] == ("importer:gltf" if source else "vertex_colors")
        assert camera["engine"] == engine and camera["lighting"] == "studio"
    plain, textured = looks["vertex"], looks["auto"]
    plain_mask, textured_mask = plain[:, :, 3] > 0, textured[:, :, 3] > 0
    overlap = (plain_mask & textured_mask).sum() / (plain_mask | textured_mask).sum()
    assert overlap > 0.97, "the imported asset sits exactly where the normalised mesh is"
    red, green = textured[textured_mask, 0], textured[textured_mask, 1]
    assert ((red > green + 40).mean() > 0.2) and ((green > red + 40).mean() > 0.2), "both checker colours show"
    assert np.abs(plain[plain_mask, 0] - plain[plain_mask, 1]).mean() < 10, "the plain mesh is grey"


def test_missing_textures_show_the_material_colour_and_a_broken_asset_falls_back(tmp_path):
    cube = trimesh.creation.box(extents=[2.0 / np.sqrt(3.0)] * 3)
    asset = tmp_path / "crate.obj"
    cube.export(asset, include_texture=False)
    asset.write_text("mtllib crate.mtl\nusemtl crate\n" + asset.read_text())
    (tmp_path / "crate.mtl").write_text("newmtl crate\nKd 0.1 0.2 0.9\nmap_Kd textures/absent.jpg\n")
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF not really")
    mesh = _write_mesh(tmp_path / "cube.npz", cube)
    settings = RenderSettings(engine="workbench", resolution=48, num_views=1)
    identity = np.eye(4)
    items = [
        RenderItem(
            "crate", mesh, tmp_path / "crate", settings.views_for("crate"), render_source(asset, identity, settings)
        ),
        RenderItem(
            "broken", mesh, tmp_path / "broken", settings.views_for("broken"), render_source(broken, identity, settings)
        ),
    ]
    assert render_batches(items, settings, blender=str(BLENDER_PYTHON)) == {"crate": None, "broken": None}
    crate = _rgba(tmp_path / "crate" / "view_00.png")
    shown = crate[crate[:, :, 3] > 0]
    assert (shown[:, 2] > shown[:, 0] + 40).mean() > 0.9, "blue from Kd, not Blender's magenta missing-texture colour"
    fallback = json.loads((tmp_path / "broken" / "cameras.json").read_text())["views"][0]
    assert fallback["look"].startswith("vertex_colors (import failed"), fallback["look"]
    assert (_rgba(tmp_path / "broken" / "view_00.png")[:, :, 3] > 0).mean() > 0.05, "the plain mesh is rendered"


def test_randomised_views_render_and_are_recorded(tmp_path):
    tall = trimesh.creation.cylinder(radius=0.2, height=3.0)
    tall.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # along y: upright
    mesh = _write_mesh(tmp_path / "rod.npz", tall)
    settings = RenderSettings(
        engine="mixed",
        samples=2,
        resolution=48,
        num_views=4,
        elevations=(0.0,),
        lighting="random",
        light_rotation_jitter_deg=180.0,
        fov_jitter_deg=10.0,
        distance_jitter=0.5,
        seed=3,
    )
    views = settings.views_for("rod")
    rolled = [{**view, "roll": 90.0} for view in views[:1]]
    items = [RenderItem("rod", mesh, tmp_path / "rod", views), RenderItem("rolled", mesh, tmp_path / "rolled", rolled)]
    assert render_batches(items, settings, blender=str(BLENDER_PYTHON)) == {"rod": None, "rolled": None}
    cameras = json.loads((tmp_path / "rod" / "cameras.json").read_text())["views"]
    for view, camera in zip(views, cameras):
        assert camera["engine"] == view["engine"] and camera["lighting"] == view["lighting"]
        assert camera["light_rotation"] == view["light_rotation"]
        assert camera["fov_deg"] == pytest.approx(view["fov_deg"], abs=1e-4)
        box, _ = _alpha_box(tmp_path / "rod" / f"view_{camera['index']:02d}.png")
        assert box.min() > 0 and box.max() < 47, "farther or wider, never cut off"
    rows_top, rows_bottom, cols_left, cols_right = _alpha_box(tmp_path / "rolled" / "view_00.png")[0]
    assert cols_right - cols_left > 0.6 * 48 and rows_bottom - rows_top < 0.3 * 48, "a 90° roll lays the rod down"
