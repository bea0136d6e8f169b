"""hf_cmah.geometry: every mesh format loads, bad files fail clearly, sampling is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from hf_cmah.errors import InvalidInputError, MeshLoadError
from hf_cmah.geometry import DEFAULT_GREY, load_mesh, load_points, normalize_mesh, normalize_points, sample_points


def _box(extents=(1.0, 2.0, 3.0)) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".ply", ".stl", ".glb", ".gltf"])
def test_load_mesh_reads_every_format(tmp_path, suffix):
    path = tmp_path / f"box{suffix}"
    _box().export(path)
    mesh = load_mesh(path)
    assert isinstance(mesh, trimesh.Trimesh)
    assert len(mesh.faces) == 12
    assert np.allclose(mesh.extents, [1.0, 2.0, 3.0])


def test_scene_is_flattened_with_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(_box((1, 1, 1)), node_name="a")
    scene.add_geometry(_box((1, 1, 1)), node_name="b", transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    path = tmp_path / "two.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 24
    assert np.allclose(mesh.bounds[:, 0], [-0.5, 5.5])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("truncated.off", "OFF\n8 12 0\n0 0 0\n1 0 0\n", "cannot parse as OFF"),
        ("empty.obj", "", "no faces"),
        ("garbage.obj", "this is not a mesh\n\x00\x01", "no faces"),
        ("notes.txt", "hello", "unsupported mesh format"),
        (
            "points.ply",
            "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
            "property float z\nend_header\n0 0 0\n1 1 1\n",
            "not a triangle mesh",
        ),
    ],
)
def test_bad_files_raise_mesh_load_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(MeshLoadError, match=message) as error:
        load_mesh(path)
    assert name in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(MeshLoadError, match="no such file"):
        load_mesh(tmp_path / "absent.obj")


def test_zero_area_mesh_is_rejected(tmp_path):
    path = tmp_path / "flat.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    with pytest.raises(MeshLoadError, match="zero area"):
        load_mesh(path)


def test_normalize_centres_and_fits_the_unit_ball():
    mesh = _box()
    mesh.apply_translation([10.0, -3.0, 7.0])
    mesh.apply_scale(1e8)
    normal = normalize_mesh(mesh)
    assert np.allclose(normal.centroid, 0.0, atol=1e-6)
    assert np.isclose(np.linalg.norm(normal.vertices, axis=1).max(), 1.0)


def test_normalize_ignores_stray_vertices():
    sphere = trimesh.creation.icosphere(subdivisions=3)  # 642 vertices: the stray triangle is < 1% of them
    stray = trimesh.Trimesh([[4e8, 4e8, 4e8], [4e8 + 1, 4e8, 4e8], [4e8, 4e8 + 1, 4e8]], [[0, 1, 2]])
    normal = normalize_mesh(trimesh.util.concatenate([sphere, stray]))
    assert len(normal.faces) == len(sphere.faces)
    assert np.allclose(np.linalg.norm(normal.vertices[np.unique(normal.faces)], axis=1), 1.0, atol=0.02)


def test_up_axis_z_turns_z_up_into_y_up():
    normal = normalize_mesh(_box((1.0, 1.0, 4.0)), up_axis="z")
    assert np.argmax(normal.extents) == 1
    with pytest.raises(InvalidInputError):
        normalize_mesh(_box(), up_axis="x")


def test_sample_points_shape_dtype_and_determinism():
    mesh = normalize_mesh(_box())
    first = sample_points(mesh, 500, seed=3)
    assert first.shape == (500, 3) and first.dtype == np.float32
    assert np.array_equal(first, sample_points(mesh, 500, seed=3))
    assert not np.array_equal(first, sample_points(mesh, 500, seed=4))
    # every sample lies on a face of the box: one coordinate at its half extent
    half = np.abs(mesh.vertices).max(axis=0)
    assert np.isclose(np.abs(first), half, atol=1e-5).any(axis=1).all()


def test_sample_points_colors():
    grey = sample_points(_box(), 10, with_colors=True)
    assert grey.shape == (10, 6) and grey.dtype == np.float32
    assert np.allclose(grey[:, 3:], DEFAULT_GREY)
    red = _box()
    red.visual.vertex_colors = [255, 0, 0, 255]
    colored = sample_points(red, 10, with_colors=True)
    assert colored.dtype == np.float32
    assert np.allclose(colored[:, 3:], [1.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError):
        sample_points(red, 0)


def test_load_points_from_meshes_and_point_files(tmp_path):
    _box().export(tmp_path / "box.stl")
    from_mesh = load_points(tmp_path / "box.stl", 64, seed=1)
    assert from_mesh.shape == (64, 3)
    cloud = np.random.default_rng(0).normal(size=(100, 3)) * 5 + 2
    np.save(tmp_path / "cloud.npy", cloud)
    np.savetxt(tmp_path / "cloud.xyz", cloud)
    from_npy = load_points(tmp_path / "cloud.npy", 256, seed=2)
    assert from_npy.shape == (256, 3)  # more than the file holds: drawn with replacement
    assert np.linalg.norm(from_npy, axis=1).max() <= 1.0 + 1e-6
    assert np.allclose(load_points(tmp_path / "cloud.xyz", 50, seed=2), load_points(tmp_path / "cloud.npy", 50, seed=2))
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    with pytest.raises(MeshLoadError, match=r"bad\.npy"):
        load_points(tmp_path / "bad.npy", 8)


def test_normalize_points_keeps_colors():
    points = np.array([[0, 0, 2, 0.1, 0.2, 0.3], [0, 0, 4, 0.4, 0.5, 0.6]], dtype=np.float32)
    normal = normalize_points(points, up_axis="z")
    assert np.allclose(normal[:, 3:], points[:, 3:])
    assert np.allclose(normal[:, :3], [[0, -1, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    "header", ["OFF\n4 2 0\n", "OFF 4 2 0\n", "OFF4 2 0\n"], ids=["plain", "one-line", "modelnet-glitch"]
)
def test_off_headers(tmp_path, header):
    path = tmp_path / "tetra.off"
    path.write_text(header + "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n")
    mesh = load_mesh(path)
    assert mesh.vertices.shape == (4, 3) and mesh.faces.tolist() == [[0, 1, 2], [0, 1, 3]]


def test_off_with_quads_and_colours_goes_through_trimesh(tmp_path):
    path = tmp_path / "quad.off"
    path.write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3 255 0 0\n")
    assert len(load_mesh(path).faces) == 2
