"""The shared pipeline: a :class:`ShapeSource` → cached points and renders → a ``DatasetDict``.

Each stage caches per shape (see :mod:`hf_cmah.data.cache`), so an interrupted or repeated
build only does the missing work. A shape that fails anywhere is skipped and reported at
the end; ``strict=True`` raises on the first failure instead.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import InvalidInputError, MeshLoadError
from ..render.launcher import (
    LATER_FIELD_DEFAULTS,
    RenderItem,
    RenderSettings,
    render_batches,
    render_source,
    shows_own_materials,
)
from .cache import cache_root, file_digest, settings_digest
from .features import empty_view, shape_features
from .records import Failure, ShapeRecord, ShapeSource
from .storage import write_dataset

# Bump when geometry's sampling or normalisation changes, so cached samples are not reused.
GEOMETRY_VERSION = 1


@dataclass(frozen=True)
class BuildSettings:
    """Everything that shapes a built dataset besides the source itself."""

    num_points: int = 1024
    seed: int = 0
    with_colors: bool = False
    render: RenderSettings = field(default_factory=RenderSettings)
    background: tuple[int, int, int] | None = (255, 255, 255)
    strict: bool = False
    blender: str | None = None
    batch_size: int = 64
    threads: int = 0
    render_jobs: int | None = None  # Blender processes at once (None: render.launcher.default_render_jobs)
    progress: bool = True


@dataclass
class BuildResult:
    """The dataset, the shapes that were skipped and why, and how long each stage took."""

    dataset: datasets.DatasetDict
    failures: list[Failure]
    seconds: dict[str, float]
    rendered_views: int = 0


@dataclass
class _Prepared:
    record: ShapeRecord
    points_file: Path
    render_dir: Path | None


def build_dataset(source: ShapeSource, settings: BuildSettings) -> BuildResult:
    """Sample, render and assemble every shape of ``source``; see the module docstring."""
    failures = list(source.failures)
    if settings.strict and failures:
        raise InvalidInputError(f"{source.name}: {failures[0]}")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hf-cmah-meshes-") as workdir:
        started = time.perf_counter()
        prepared, to_render = _prepare_all(source, settings, Path(workdir), failures)
        seconds["points"] = time.perf_counter() - started
        started = time.perf_counter()
        _render_all(to_render, prepared, settings, failures)
        seconds["render"] = time.perf_counter() - started
    started = time.perf_counter()
    dataset = _assemble(source, list(prepared.values()), settings, failures)
    seconds["assemble"] = time.perf_counter() - started
    rendered = sum(len(item.views) for item in to_render if item.id in prepared)
    return BuildResult(dataset=dataset, failures=failures, seconds=seconds, rendered_views=rendered)


def _fail(failures: list[Failure], record: ShapeRecord, error: str, strict: bool) -> None:
    failure = Failure(record.shape_id, record.display_path, error)
    if strict:
        raise MeshLoadError(f"--strict: {failure}")
    failures.append(failure)


def _prepare_all(
    source: ShapeSource, settings: BuildSettings, workdir: Path, failures: list[Failure]
) -> tuple[dict[str, _Prepared], list[RenderItem]]:
    prepared: dict[str, _Prepared] = {}
    to_render: list[RenderItem] = []
    for index, record in enumerate(tqdm(source.records, desc="points", unit="shape", disable=not settings.progress)):
        try:
            entry, item = _prepare(record, settings, workdir / f"{index}.npz")
        except Exception as error:  # trimesh and numpy raise many types on bad files; report, go on
            _fail(failures, record, _describe(error), settings.strict)
            continue
        prepared[record.shape_id] = entry
        if item is not None:
            to_render.append(item)
    return prepared, to_render


def _describe(error: Exception) -> str:
    return str(error) if isinstance(error, InvalidInputError) else f"{type(error).__name__}: {error}"


def _shape_key(record: ShapeRecord) -> str:
    return record.cache_key or mesh_file_key(record.mesh_path or record.points_path)


def mesh_file_key(path: Path) -> str:
    """What a shape file's cached samples and renders are keyed by: its content hash and its format."""
    return f"{file_digest(path)}{path.suffix.lower()}"


def render_cache_dir(key: str, render: RenderSettings, up_axis: str = "y", own_materials: bool = False) -> Path:
    """Where the views of the shape ``key`` rendered with ``render`` are cached; ``cameras.json`` marks them done.

    ``own_materials``: the asset file itself is rendered, with its materials (`shows_own_materials`),
    which looks different from the plain mesh the cache held before, so it keys its own entry.
    """
    parts = [GEOMETRY_VERSION, render.fingerprint(), up_axis] + (["own-materials"] if own_materials else [])
    return cache_root() / "renders" / f"{key}-{settings_digest(parts)}"


def _prepare(record: ShapeRecord, settings: BuildSettings, mesh_file: Path) -> tuple[_Prepared, RenderItem | None]:
    """Make sure the shape's points are cached; return a render job if its views are not."""
    key = _shape_key(record)
    points_settings = [GEOMETRY_VERSION, settings.num_points, settings.seed, settings.with_colors, record.up_axis]
    points_file = cache_root() / "points" / f"{key}-{settings_digest(points_settings)}.npy"
    render_dir = None
    own_materials = shows_own_materials(record.mesh_path, settings.render)
    if record.renderable and settings.render.num_views > 0:
        render_dir = render_cache_dir(key, settings.render, record.up_axis, own_materials)
    needs_render = render_dir is not None and not (render_dir / "cameras.json").is_file()
    if points_file.is_file() and not needs_render:
        return _Prepared(record, points_file, render_dir), None
    mesh = record.load_mesh() if needs_render else None
    if not points_file.is_file():
        points = record.load_points(settings.num_points, settings.seed, settings.with_colors, mesh=mesh)
        _save_atomic(points_file, points)
    if not needs_render:
        return _Prepared(record, points_file, render_dir), None
    write_render_mesh(mesh, mesh_file)
    source = render_source(record.mesh_path, mesh.metadata["to_normalized"], settings.render) if own_materials else None
    item = RenderItem(record.shape_id, mesh_file, render_dir, settings.render.views_for(key), source)
    return _Prepared(record, points_file, render_dir), item


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write through a temporary name so an interrupted build never leaves a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, array)
    partial.replace(path)


def write_render_mesh(mesh, path: Path) -> None:
    """The renderer's input: y-up vertices, triangles and, when the mesh has any, per-vertex colours."""
    arrays = {"vertices": mesh.vertices.astype(np.float32), "faces": mesh.faces.astype(np.int32)}
    visual = mesh.visual
    if visual.kind == "texture" and getattr(visual.material, "image", None) is not None:
        visual = visual.to_color()
    if visual.kind in ("vertex", "face"):
        arrays["colors"] = (np.asarray(visual.vertex_colors)[:, :3] / 255.0).astype(np.float32)
    np.savez(path, **arrays)


def _render_all(
    to_render: list[RenderItem], prepared: dict[str, _Prepared], settings: BuildSettings, failures: list[Failure]
) -> None:
    if not to_render:
        return
    bar = tqdm(total=len(to_render), desc="render", unit="shape", disable=not settings.progress)

    def on_done(shape_id: str, error: str | None) -> None:
        bar.update(1)
        if error is not None and settings.strict:
            raise MeshLoadError(f"--strict: {shape_id}: render failed: {error}")

    try:
        outcome = render_batches(
            to_render,
            settings.render,
            settings.blender,
            settings.batch_size,
            settings.threads,
            on_done,
            settings.render_jobs,
        )
    finally:
        bar.close()
    for shape_id, error in outcome.items():
        if error is not None:
            _fail(failures, prepared.pop(shape_id).record, f"render failed: {error}", settings.strict)


def _assemble(
    source: ShapeSource, prepared: list[_Prepared], settings: BuildSettings, failures: list[Failure]
) -> datasets.DatasetDict:
    with_thumbnail = any(entry.record.thumbnail is not None for entry in prepared)
    features = shape_features(source.class_names, settings.num_points, settings.with_colors, with_thumbnail)
    splits: dict[str, list[dict]] = {}
    for entry in tqdm(prepared, desc="assemble", unit="shape", disable=not settings.progress):
        try:
            rows = _rows(entry, source, settings, with_thumbnail)
        except (OSError, ValueError) as error:  # a cached file or an image that PIL cannot read
            _fail(failures, entry.record, _describe(error), settings.strict)
            continue
        splits.setdefault(entry.record.split, []).extend(rows)
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows, features=features) for split, rows in sorted(splits.items())}
    )


def _rows(entry: _Prepared, source: ShapeSource, settings: BuildSettings, with_thumbnail: bool) -> list[dict]:
    """One row per image of the shape: its renders, then the images it came with."""
    record = entry.record
    base = {
        "shape_id": record.shape_id,
        "label": source.class_names.index(record.label) if record.label is not None else -1,
        "points": np.load(entry.points_file),
        "source": source.name,
        "mesh_path": record.display_path,
    }
    thumbnail = _file_image(record.thumbnail) if record.thumbnail is not None else None
    if with_thumbnail:
        base["thumbnail"] = thumbnail
    images = _render_images(entry.render_dir, settings.background, settings.render.engine) if entry.render_dir else []
    images += [(_file_image(image.path), {**empty_view(image.kind), **(image.view or {})}) for image in record.images]
    if not images:
        images = [(thumbnail, empty_view("thumbnail" if thumbnail else "none"))]
    return [{**base, "image": image, "view": view} for image, view in images]


def _file_image(path: Path) -> dict:
    """Image files go into the dataset as their original bytes (after checking PIL can read them)."""
    with Image.open(path) as image:
        image.verify()
    return {"bytes": path.read_bytes(), "path": path.name}


def _render_images(render_dir: Path, background: tuple[int, int, int] | None, engine: str) -> list[tuple[dict, dict]]:
    """A shape's cached renders with their views; ``engine`` for renders cached before views named theirs."""
    cameras = json.loads((render_dir / "cameras.json").read_text())["views"]
    images = []
    for camera in cameras:
        path = render_dir / f"view_{camera['index']:02d}.png"
        view = {
            "index": camera["index"],
            "kind": "render",
            "azimuth": camera["azimuth"],
            "elevation": camera["elevation"],
            "distance": camera["distance"],
            "fov_deg": camera["fov_deg"],
            "cam_to_world": np.asarray(camera["cam_to_world"], dtype=np.float32).ravel().tolist(),
            # Renders cached before these were recorded were all plain meshes, studio-lit, upright.
            "roll": camera.get("roll", 0.0),
            "engine": camera.get("engine", engine),
            "lighting": camera.get("lighting", "studio"),
            "light_rotation": camera.get("light_rotation", 0.0),
            "look": camera.get("look", "vertex_colors"),
        }
        images.append((composite_render(path, background), view))
    return images


def composite_render(path: Path, background: tuple[int, int, int] | None) -> dict:
    """Renders are RGBA on a transparent film; flatten them onto the background colour unless it is None."""
    if background is None:
        return {"bytes": path.read_bytes(), "path": path.name}
    with Image.open(path) as image:
        flat = Image.new("RGBA", image.size, (*background, 255))
        flat.alpha_composite(image.convert("RGBA"))
    buffer = io.BytesIO()
    flat.convert("RGB").save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": path.name}


def settings_summary(settings: BuildSettings) -> dict:
    """The settings as plain JSON (for the dataset card and ``build_info.json``)."""
    summary = asdict(settings)
    for transient in ("progress", "blender", "batch_size", "threads", "render_jobs", "strict"):
        summary.pop(transient)
    return summary


def build_to_folder(
    source: ShapeSource, settings: BuildSettings, out: str | Path | None = None, limit: int | None = None
) -> tuple[Path, BuildResult]:
    """Build ``source`` (its first ``limit`` shapes per split, if given) and write it to ``out``.

    The default folder, ``<cache>/datasets/<source>-<views>v-<points>p-<engine>-<resolution>px``
    (``-random-<digest>`` added when any domain-randomisation field is set), names the settings that
    matter, so builds with different settings sit side by side.
    """
    if limit is not None:
        kept: dict[str, int] = {}
        records = []
        for record in source.records:
            if kept.get(record.split, 0) < limit:
                kept[record.split] = kept.get(record.split, 0) + 1
                records.append(record)
        source = replace(source, records=records)
    result = build_dataset(source, settings)
    render = settings.render
    name = f"{source.name}-{render.num_views}v-{settings.num_points}p-{render.engine}-{render.resolution}px"
    randomised = {key: value for key, value in render.fingerprint().items() if key in LATER_FIELD_DEFAULTS}
    if randomised or render.materials != "auto":
        name += f"-random-{settings_digest([randomised, render.materials])[:8]}"
    folder = Path(out) if out else cache_root() / "datasets" / (name + (f"-limit{limit}" if limit else ""))
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(result.dataset, folder, source, settings_summary(settings), result.failures)
    return folder, result


__all__ = [
    "GEOMETRY_VERSION",
    "BuildResult",
    "BuildSettings",
    "build_dataset",
    "build_to_folder",
    "composite_render",
    "mesh_file_key",
    "render_cache_dir",
    "settings_summary",
    "write_render_mesh",
]
