"""Meshes and point files in, normalised surface point clouds out.

Real-world meshes are polygon soups: disconnected parts, zero-area faces, arbitrary frames
and scales (PSB's m94 spans ±4e8), missing textures. Everything here either returns a
usable result or raises :class:`~hf_cmah.errors.MeshLoadError` naming the file and the
problem, so batch jobs can collect the error and go on with the next file.

Point clouds follow contract 1 of ARCHITECTURE.md: ``float32 [N, 3]`` (xyz) or
``[N, 6]`` (xyz + rgb in 0..1), right-handed, y up.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import trimesh

from .errors import InvalidInputError, MeshLoadError
from .processing_cmah import NO_COLOR_GREY, normalize_xyz, resample_rows

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")
POINT_SUFFIXES = (".npy", ".npz", ".xyz", ".pts", ".txt")
DEFAULT_GREY = NO_COLOR_GREY
UP_AXES = ("y", "z")
# A vertex further from the median than this many times the 99th-percentile distance is a
# stray (export glitch), not geometry: across all 1,284 PSB meshes the ratio stays below 6.
OUTLIER_FACTOR = 100.0


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Load one mesh file as a single triangle mesh (scenes are flattened with their transforms).

    Faces that touch non-finite vertices are dropped; a file without any usable face raises.
    """
    path = Path(path)
    return _clean_mesh(_flatten(_parse_mesh_file(path), path), path)


def _parse_mesh_file(path: Path) -> trimesh.Trimesh | trimesh.PointCloud | trimesh.Scene:
    """What a mesh file holds, parsed once; every way a file can be bad is a MeshLoadError naming it."""
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshLoadError(f"{path}: unsupported mesh format {suffix!r} (expected one of {', '.join(MESH_SUFFIXES)})")
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    fast = _read_plain_off(path) if suffix == ".off" else None
    if fast is not None:
        return fast
    try:
        return trimesh.load(path, file_type=suffix[1:], process=False)
    except Exception as error:  # trimesh raises anything from IndexError to UnicodeDecodeError on bad files
        raise MeshLoadError(
            f"{path}: cannot parse as {suffix[1:].upper()} ({type(error).__name__}: {error})"
        ) from error


def _read_plain_off(path: Path) -> trimesh.Trimesh | None:
    """Read the common OFF case (ASCII, triangles only, no colours) with NumPy; None for anything else.

    trimesh parses OFF line by line in Python, which made it 80% of the time of loading and
    sampling the PSB; other OFF variants still go to trimesh, which also words their errors.
    """
    head, _, body = path.read_bytes().partition(b"\n")
    tokens = head.split()
    if not tokens or not tokens[0].startswith(b"OFF") or b"#" in body:
        return None
    counts = tokens[1:] if tokens[0] == b"OFF" else [tokens[0][3:], *tokens[1:]]
    if not counts:
        counts_line, _, body = body.partition(b"\n")
        counts = counts_line.split()
    try:
        num_vertices, num_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fromstring warns where it stops early
        values = np.fromstring(body.decode("ascii", errors="replace"), sep=" ")
    if len(values) != 3 * num_vertices + 4 * num_faces or num_faces == 0:
        return None
    faces = values[3 * num_vertices :].reshape(num_faces, 4)
    if (faces[:, 0] != 3).any() or faces[:, 1:].max() >= num_vertices or faces[:, 1:].min() < 0:
        return None
    vertices = values[: 3 * num_vertices].reshape(num_vertices, 3)
    return trimesh.Trimesh(vertices, faces[:, 1:].astype(np.int64), process=False)


def _flatten(loaded: object, path: Path) -> trimesh.Trimesh:
    """Turn whatever trimesh returned into one Trimesh, or say why that is impossible."""
    if isinstance(loaded, trimesh.Scene):
        meshes = [geometry for geometry in loaded.dump() if isinstance(geometry, trimesh.Trimesh)]
        if not meshes:
            raise MeshLoadError(f"{path}: holds no faces (an empty file, or text that is not a mesh)")
        # Concatenating textured and untextured parts can fail on their visuals; geometry matters more.
        try:
            return trimesh.util.concatenate(meshes)
        except Exception:
            return trimesh.util.concatenate([trimesh.Trimesh(m.vertices, m.faces, process=False) for m in meshes])
    if isinstance(loaded, trimesh.Trimesh):
        return loaded
    raise MeshLoadError(f"{path}: holds a {type(loaded).__name__}, not a triangle mesh (no faces)")


def _clean_mesh(mesh: trimesh.Trimesh, path: Path) -> trimesh.Trimesh:
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise MeshLoadError(f"{path}: holds no faces")
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():
        mesh.update_faces(finite[mesh.faces].all(axis=1))
        if len(mesh.faces) == 0:
            raise MeshLoadError(f"{path}: every face touches a NaN or infinite vertex")
    if not mesh.area > 0:
        raise MeshLoadError(f"{path}: all {len(mesh.faces)} faces have zero area")
    return mesh


def normalize_mesh(
    mesh: trimesh.Trimesh, up_axis: str = "y", outlier_factor: float | None = OUTLIER_FACTOR
) -> trimesh.Trimesh:
    """Return a copy centred on its surface centroid and scaled into the unit ball, y up.

    ``up_axis="z"`` rotates z-up data (ShapeNet exports, CAD) into the y-up frame.
    Faces touching stray vertices (see ``OUTLIER_FACTOR``) are removed first so that one
    glitch does not shrink the real shape to a dot; ``outlier_factor=None`` keeps them.
    The copy's ``metadata["to_normalized"]`` is the 4×4 that took the file's coordinates there,
    so the asset file itself can be placed on the normalised shape (the renderer does).
    """
    if up_axis not in UP_AXES:
        raise InvalidInputError(f"up_axis: expected one of {UP_AXES}, got {up_axis!r}")
    mesh = mesh.copy()
    if outlier_factor is not None:
        _drop_stray_faces(mesh, outlier_factor)
    to_normalized = np.eye(4)
    if up_axis == "z":
        # (x, y, z) -> (x, z, -y): a -90° turn about x, keeps the frame right-handed.
        to_normalized = trimesh.transformations.rotation_matrix(-np.pi / 2, [1.0, 0.0, 0.0])
        mesh.apply_transform(to_normalized)
    # Area-weighted surface centroid: does not depend on how densely each part is tessellated.
    centroid = _surface_centroid(mesh)
    mesh.apply_translation(-centroid)
    to_normalized = trimesh.transformations.translation_matrix(-centroid) @ to_normalized
    radius = np.linalg.norm(mesh.vertices[np.unique(mesh.faces)], axis=1).max()
    if radius > 0:
        mesh.apply_scale(1.0 / radius)
        to_normalized = np.diag([1.0 / radius] * 3 + [1.0]) @ to_normalized
    mesh.metadata["to_normalized"] = to_normalized
    return mesh


def _drop_stray_faces(mesh: trimesh.Trimesh, outlier_factor: float) -> None:
    used = np.unique(mesh.faces)
    distance = np.linalg.norm(mesh.vertices - np.median(mesh.vertices[used], axis=0), axis=1)
    limit = outlier_factor * np.percentile(distance[used], 99)
    keep = (distance[mesh.faces] <= limit).all(axis=1)
    if 0 < keep.sum() < len(keep):
        mesh.update_faces(keep)


def _surface_centroid(mesh: trimesh.Trimesh) -> np.ndarray:
    triangles = mesh.triangles
    areas = mesh.area_faces
    if areas.sum() <= 0:
        return triangles.reshape(-1, 3).mean(axis=0)
    return (triangles.mean(axis=1) * areas[:, None]).sum(axis=0) / areas.sum()


def sample_points(mesh: trimesh.Trimesh, num_points: int, seed: int = 0, with_colors: bool = False) -> np.ndarray:
    """Sample ``num_points`` points uniformly by area over the surface: ``float32 [N, 3]`` or ``[N, 6]``.

    The same mesh and seed give the same points. Colours come from the texture, the vertex
    or the face colours, in that order, and are 0.4 grey when the mesh has none.
    """
    if num_points <= 0:
        raise InvalidInputError(f"num_points: expected a positive number, got {num_points}")
    if not mesh.area > 0:
        raise MeshLoadError("sample_points: the mesh has no surface area to sample")
    rng = np.random.default_rng(seed)
    points, face_index, barycentric = trimesh.sample.sample_surface(
        mesh, num_points, face_weight=mesh.area_faces, return_barycentric=True, seed=rng
    )
    points = points.astype(np.float32)
    if not with_colors:
        return points
    colors = _sample_colors(mesh, face_index, barycentric)
    return np.concatenate([points, colors], axis=1).astype(np.float32)


def _sample_colors(mesh: trimesh.Trimesh, face_index: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """RGB in 0..1 for each sample; grey where the mesh carries no colour of its own."""
    visual = mesh.visual
    grey = np.full((len(face_index), 3), DEFAULT_GREY, dtype=np.float32)
    if visual.kind == "texture":
        uv = getattr(visual, "uv", None)
        image = getattr(visual.material, "image", None)
        if uv is None or image is None:
            return grey
        corners = uv[mesh.faces[face_index]]  # (N, 3, 2)
        uv_samples = (corners * barycentric[:, :, None]).sum(axis=1)
        rgba = trimesh.visual.color.uv_to_interpolated_color(uv_samples, image)
        return (rgba[:, :3] / 255.0).astype(np.float32)
    if visual.kind == "vertex":
        corners = visual.vertex_colors[mesh.faces[face_index], :3].astype(np.float32)  # (N, 3, 3)
        return (corners * barycentric[:, :, None]).sum(axis=1) / 255.0
    if visual.kind == "face":
        return (visual.face_colors[face_index, :3] / 255.0).astype(np.float32)
    return grey


def load_points(
    path: str | Path, num_points: int, seed: int = 0, with_colors: bool = False, up_axis: str = "y"
) -> np.ndarray:
    """Load a mesh or point file and return ``num_points`` normalised points (see :func:`sample_points`).

    Point files (``.npy``/``.npz``/``.xyz``/``.pts``/``.txt``, xyz or xyz+rgb per row, and
    PLY files without faces) are normalised like meshes, then resampled with a seeded draw
    (with replacement only when the file has too few points). A file that cannot give points raises
    :class:`~hf_cmah.errors.MeshLoadError` naming it, whatever the parser's own error was.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in POINT_SUFFIXES:
        return _resample(_read_point_file(path), num_points, seed, with_colors, up_axis)
    loaded = _parse_mesh_file(path)
    if suffix == ".ply" and isinstance(loaded, trimesh.PointCloud):
        return _resample(_point_cloud_array(loaded), num_points, seed, with_colors, up_axis)
    mesh = normalize_mesh(_clean_mesh(_flatten(loaded, path), path), up_axis=up_axis)
    return sample_points(mesh, num_points, seed=seed, with_colors=with_colors)


def _point_cloud_array(cloud: trimesh.PointCloud) -> np.ndarray:
    xyz = np.asarray(cloud.vertices, dtype=np.float32)
    colors = getattr(cloud, "colors", None)
    if colors is None or len(colors) != len(xyz):
        return xyz
    return np.concatenate([xyz, np.asarray(colors, dtype=np.float32)[:, :3] / 255.0], axis=1)


def _read_point_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = archive[archive.files[0]]
        else:
            array = np.loadtxt(path, ndmin=2, delimiter="," if path.suffix.lower() == ".txt" else None)
    except (ValueError, OSError, IndexError) as error:
        raise MeshLoadError(f"{path}: cannot read points ({type(error).__name__}: {error})") from error
    if array.ndim != 2 or array.shape[1] not in (3, 6) or len(array) == 0:
        raise MeshLoadError(f"{path}: expected a non-empty [N, 3] or [N, 6] point array, got shape {array.shape}")
    array = array[np.isfinite(array).all(axis=1)]
    if len(array) == 0:
        raise MeshLoadError(f"{path}: every point is NaN or infinite")
    return array.astype(np.float32)


def normalize_points(points: np.ndarray, up_axis: str = "y") -> np.ndarray:
    """Centre ``[N, 3+]`` points on their mean and scale them into the unit ball, y up (colours kept)."""
    if up_axis not in UP_AXES:
        raise InvalidInputError(f"up_axis: expected one of {UP_AXES}, got {up_axis!r}")
    points = np.array(points, dtype=np.float32)
    points[:, :3] = normalize_xyz(points[:, :3], up_axis)
    return points


def _resample(points: np.ndarray, num_points: int, seed: int, with_colors: bool, up_axis: str) -> np.ndarray:
    if num_points <= 0:
        raise InvalidInputError(f"num_points: expected a positive number, got {num_points}")
    points = normalize_points(points, up_axis)
    points = points[resample_rows(len(points), num_points, seed)]
    if not with_colors:
        return points[:, :3].copy()
    if points.shape[1] == 3:
        return np.concatenate([points, np.full((num_points, 3), DEFAULT_GREY, dtype=np.float32)], axis=1)
    if points[:, 3:].max(initial=0.0) > 1.0:  # files with 0..255 colours
        points[:, 3:] /= 255.0
    return points


__all__ = [
    "DEFAULT_GREY",
    "MESH_SUFFIXES",
    "POINT_SUFFIXES",
    "load_mesh",
    "load_points",
    "normalize_mesh",
    "normalize_points",
    "sample_points",
]
