"""Turning a shape library into codes: batched, on the GPU when there is one, resumable.

A library is a folder of mesh / point files, a list of :class:`ShapeRecord`, or a built
``datasets.Dataset`` (its ``points`` column, one shape per ``shape_id``). A build writes each
finished batch to ``.<out>.partial/batch-NNNNNN.npz`` (atomically), so a killed build restarts
at the first missing batch. The partial folder remembers which model and which list of shapes
it belongs to and is ignored when either changed. With assets, each shape's mesh file is stored
as GLB (its point cloud where it has none, said in its ``asset_note``) and meshes without an
image get a rendered thumbnail (see ``thumbnails.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codes import pack_codes
from ..errors import InvalidInputError, MeshLoadError
from ..geometry import MESH_SUFFIXES, POINT_SUFFIXES, load_points
from .storage import ModelFingerprint

# Why a shape's GLB is its point cloud (its `asset_note`); `hf-cmah index build` counts them.
POINT_FILE_NOTE = "a point file: the GLB holds its points, and it has no surface to render a thumbnail of"
MESH_NOT_FOUND_NOTE = "mesh file not found: the GLB holds the point cloud"
# Bump when a batch file's keys change, so that a partial build of an older hf_cmah starts afresh.
BATCH_FORMAT = 2


@dataclass(frozen=True)
class ShapeRecord:
    """One library entry: a unique id, the file it comes from, and an optional class label."""

    shape_id: str
    source: str
    label: str | None = None


# Reads what belongs to records[start:stop] when a library carries it (a built dataset): clouds, images.
RowReader = Callable[[int, int], list]


@dataclass
class ShapeLibrary:
    """What a build encodes: one record per shape and, for a built dataset, readers of its clouds and images
    (without ``read_clouds`` each record's file is read; ``read_images`` gives the thumbnails) and the folder
    its relative mesh paths start from (``mesh_root``; None: the current folder)."""

    records: list[ShapeRecord]
    read_clouds: RowReader | None = None
    read_images: RowReader | None = None
    mesh_root: Path | None = None

    def mesh_file(self, record: ShapeRecord) -> tuple[Path | None, str | None]:
        """The record's mesh file on disk, or None and why there is none (its asset note)."""
        path = Path(record.source)
        if self.read_clouds is None:  # a file of the library itself, read already
            return (path, None) if path.suffix.lower() in MESH_SUFFIXES else (None, POINT_FILE_NOTE)
        path = path if path.is_absolute() else (self.mesh_root or Path()) / path
        if record.source and path.suffix.lower() in MESH_SUFFIXES and path.is_file():
            return path, None
        return None, MESH_NOT_FOUND_NOTE


@dataclass
class EncodedLibrary:
    """Codes and embeddings of the shapes that encoded, plus ``(shape_id, message)`` for those that failed.

    With assets, ``thumbnails`` / ``meshes`` name each kept shape's files in the build's ``assets/`` (or None)
    and ``asset_notes`` say why a shape has less than its mesh and a thumbnail (or None).
    """

    records: list[ShapeRecord]
    codes: np.ndarray
    embeddings: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    thumbnails: list[str | None] | None = None
    meshes: list[str | None] | None = None
    asset_notes: list[str | None] | None = None


def list_mesh_folder(root: str | Path) -> list[ShapeRecord]:
    """Every mesh or point file under ``root``, sorted; id = relative path without suffix, label = top folder."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: the shape library must be a folder of mesh or point files")
    suffixes = set(MESH_SUFFIXES) | set(POINT_SUFFIXES)
    records = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes:
            relative = path.relative_to(root)
            label = relative.parts[0] if len(relative.parts) > 1 else None
            records.append(ShapeRecord(relative.with_suffix("").as_posix(), str(path), label))
    if not records:
        raise InvalidInputError(f"{root}: no mesh or point files ({', '.join(sorted(suffixes))}) found")
    return records


def dataset_library(dataset, mesh_root: str | Path | None = None) -> ShapeLibrary:
    """A built dataset (a row per shape × view) as one record per shape, sorted by id, with readers of its rows.

    Each shape's first row gives its points, its label (a ``ClassLabel`` name; -1 → None), its
    source (``mesh_path``, else ``source``: the mesh file, relative to ``mesh_root`` unless absolute)
    and its thumbnail (``thumbnail``, else ``image``: a render).
    """
    import datasets

    from ..data.storage import unique_shape_rows

    if isinstance(dataset, datasets.DatasetDict):
        raise InvalidInputError(
            f"library: a DatasetDict of splits {sorted(dataset)}; pass one split, e.g. dataset['test']"
        )
    missing = {"shape_id", "points"} - set(dataset.column_names)
    if missing:
        raise InvalidInputError(
            f"library: the dataset has no {sorted(missing)} column (columns: {dataset.column_names})"
        )
    shapes = dataset.select(unique_shape_rows(dataset))
    columns = shapes.column_names
    labels = shapes["label"] if "label" in columns else [None] * len(shapes)
    label_feature = shapes.features.get("label")
    if isinstance(label_feature, datasets.ClassLabel):
        labels = [label_feature.int2str(label) if label >= 0 else None for label in labels]
    source_column = next((name for name in ("mesh_path", "source") if name in columns), None)
    sources = shapes[source_column] if source_column else [""] * len(shapes)
    records = [ShapeRecord(*fields) for fields in zip(shapes["shape_id"], sources, labels)]
    clouds = shapes.with_format("numpy", columns=["points"])
    image_column = next((name for name in ("thumbnail", "image") if name in columns), None)
    return ShapeLibrary(
        records,
        lambda start, stop: list(clouds[start:stop]["points"]),
        (lambda start, stop: list(shapes[start:stop][image_column])) if image_column else None,
        Path(mesh_root) if mesh_root is not None else None,
    )


class ShapeEncoder:
    """A retriever plus its processor, run in batches under ``torch.inference_mode`` on ``device``."""

    def __init__(self, model, processor=None, device: str | None = None, batch_size: int = 32):
        import torch

        from ..processing_cmah import CMAHProcessor

        if getattr(model.config, "code_bits", None) is None:
            raise InvalidInputError(f"{type(model).__name__}: a ShapeIndex needs a hashing model (config.code_bits)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.processor = processor or CMAHProcessor.from_model_config(model.config)
        self.batch_size = batch_size
        self.code_bits = model.config.code_bits

    @functools.cached_property
    def fingerprint(self) -> ModelFingerprint:
        """The model's fingerprint, hashed on first use (a library build), not when a model is attached."""
        return ModelFingerprint.of(self.model)

    def encode_images(self, images: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Packed codes ``uint8 [B, K/8]`` and float32 embeddings of images (PIL, arrays)."""
        pixel_values = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return self._run("image", pixel_values)

    def encode_shapes(self, shapes: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Packed codes and float32 embeddings of point clouds ``[N, 3|6]`` or trimesh meshes."""
        points = self.processor(points=list(shapes), return_tensors="pt")["points"]
        return self._run("shape", points)

    def _run(self, modality: str, inputs) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from ..modeling.hash_codes import codes_and_embeds

        with torch.inference_mode():
            codes, embeds = codes_and_embeds(self.model, modality, inputs.to(self.device))
        return pack_codes(codes), embeds.float().cpu().numpy()

    def encode_library(
        self,
        library: ShapeLibrary,
        work_dir: Path,
        strict: bool = False,
        progress: bool = True,
        with_assets: bool = False,
    ) -> EncodedLibrary:
        """Encode every record; finished batches in ``work_dir`` are reused. ``with_assets`` also writes each
        shape's mesh (GLB: the mesh file, else the point cloud) and thumbnail (PNG, when the library has images)
        into ``work_dir/assets``; thumbnails of the others are rendered afterwards (:func:`build_index`)."""
        from tqdm.auto import tqdm

        records, read_clouds = library.records, library.read_clouds
        clouds_digest = _clouds_digest(read_clouds, len(records)) if read_clouds and records else None
        work_dir = _prepare_work_dir(work_dir, self.fingerprint, records, self.batch_size, clouds_digest, with_assets)
        starts = range(0, len(records), self.batch_size)
        for number, start in enumerate(tqdm(starts, desc="encoding shapes", unit="batch", disable=not progress)):
            batch_file = work_dir / f"batch-{number:06d}.npz"
            if batch_file.exists():
                continue
            batch = records[start : start + self.batch_size]
            if read_clouds:
                clouds, kept, failures = read_clouds(start, start + len(batch)), [r.shape_id for r in batch], []
            else:
                clouds, kept, failures = self._read_files(batch, strict)
            assets = _store_batch_assets(library, start, batch, kept, clouds, work_dir) if with_assets else None
            self._encode_batch(clouds, kept, failures, batch_file, assets)
        return _collect_batches(records, work_dir, len(starts))

    def _read_files(self, batch: Sequence[ShapeRecord], strict: bool) -> tuple[list, list[str], list[list[str]]]:
        """The clouds of the records whose file loads, their ids, and ``[shape_id, message]`` for the others."""
        clouds, kept, failures = [], [], []
        for record in batch:
            try:
                clouds.append(load_points(record.source, self.processor.num_points, seed=self.processor.seed))
                kept.append(record.shape_id)
            except MeshLoadError as error:
                if strict:
                    raise
                failures.append([record.shape_id, str(error)])
        return clouds, kept, failures

    def _encode_batch(self, clouds, kept, failures, batch_file: Path, assets: tuple[list, ...] | None) -> None:
        codes = np.zeros((0, self.code_bits // 8), np.uint8)
        embeds = np.zeros((0, 0), np.float32)
        if clouds:
            codes, embeds = self.encode_shapes(clouds)
        names = {}
        if assets is not None:
            names = {key: np.array(values, dtype=str) for key, values in zip(ASSET_KEYS, assets)}
        temp = batch_file.with_suffix(".tmp.npz")
        ids = np.array(kept, dtype=str)
        np.savez(temp, codes=codes, embeds=embeds, ids=ids, failures=json.dumps(failures), **names)
        os.replace(temp, batch_file)


# The per-shape asset arrays of a batch file, in the order _store_batch_assets returns them.
ASSET_KEYS = ("thumbnails", "meshes", "asset_notes")


def _store_batch_assets(library: ShapeLibrary, start: int, batch, kept: list[str], clouds: list, root: Path):
    """Each kept shape's thumbnail and mesh stored under ``root/assets``: their names and its asset note
    ("" where none), in order."""
    from .assets import image_png, store_asset

    by_id = {record.shape_id: (offset, record) for offset, record in enumerate(batch)}
    images = library.read_images(start, start + len(batch)) if library.read_images else [None] * len(batch)
    thumbnails, meshes, notes = [], [], []
    for shape_id, cloud in zip(kept, clouds):
        offset, record = by_id[shape_id]
        glb, note = _shape_glb(library, record, cloud)
        meshes.append(store_asset(root, glb, ".glb"))
        notes.append(note or "")
        image = images[offset]
        thumbnails.append(store_asset(root, image_png(image), ".png") if image is not None else "")
    return thumbnails, meshes, notes


def _shape_glb(library: ShapeLibrary, record: ShapeRecord, cloud) -> tuple[bytes, str | None]:
    """The GLB of the record's mesh file, or of its point cloud with the asset note that says why."""
    from .assets import shape_glb

    mesh_file, note = library.mesh_file(record)
    glb, reason = shape_glb(mesh_file, cloud)
    return glb, f"{reason}: the GLB holds the point cloud" if reason else note


def _clouds_digest(read_clouds: RowReader, count: int) -> str:
    """sha256 of the first and last shapes' clouds: a rebuilt dataset (other sampling, other points) starts afresh."""
    digest = hashlib.sha256()
    for cloud in read_clouds(0, 1) + read_clouds(count - 1, count):
        digest.update(np.ascontiguousarray(cloud, np.float32).tobytes())
    return digest.hexdigest()


def _prepare_work_dir(
    work_dir: Path, fingerprint: ModelFingerprint, records, batch_size: int, clouds_digest: str | None, assets: bool
) -> Path:
    """Create ``work_dir``, or empty it when it belongs to another model, library, batch size or asset choice."""
    ids = "\n".join(f"{record.shape_id}\t{record.source}" for record in records)
    identity = {
        "config_hash": fingerprint.config_hash,
        "weights_hash": fingerprint.weights_hash,
        "records_sha256": hashlib.sha256(ids.encode()).hexdigest(),
        "clouds_sha256": clouds_digest,
        "batch_size": batch_size,
        "assets": assets,
        "batch_format": BATCH_FORMAT,
    }
    stamp = work_dir / "build.json"
    if work_dir.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != identity):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(identity))
    return work_dir


def _collect_batches(records: Sequence[ShapeRecord], work_dir: Path, count: int) -> EncodedLibrary:
    by_id = {record.shape_id: record for record in records}
    kept, codes, embeds, failures = [], [], [], []
    assets: dict[str, list] = {key: [] for key in ASSET_KEYS}
    for number in range(count):
        with np.load(work_dir / f"batch-{number:06d}.npz") as batch:
            kept.extend(by_id[shape_id] for shape_id in batch["ids"].tolist())
            if len(batch["ids"]):
                codes.append(batch["codes"])
                embeds.append(batch["embeds"])
            failures.extend(tuple(item) for item in json.loads(str(batch["failures"])))
            for key in ASSET_KEYS if "meshes" in batch else ():
                assets[key].extend(value or None for value in batch[key].tolist())
    if not kept:
        raise InvalidInputError(f"no shape could be encoded; first error: {failures[0][1] if failures else 'none'}")
    columns = [assets[key] or None for key in ASSET_KEYS]
    return EncodedLibrary(kept, np.concatenate(codes), np.concatenate(embeds), failures, *columns)


def build_index(
    model,
    library,
    out: str | Path,
    *,
    processor=None,
    device: str | None = None,
    batch_size: int = 32,
    with_embeddings: bool = True,
    with_assets: bool = False,
    with_thumbnails: bool = True,
    thumbnail_size: int = 256,
    blender: str | None = None,
    mesh_root: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
):
    """Encode a library and save a ShapeIndex at ``out``.

    ``library``: a folder of mesh / point files, a list of :class:`ShapeRecord`, or a built
    ``datasets.Dataset`` (see :func:`dataset_library`; its relative mesh paths start at
    ``mesh_root``). ``with_assets`` stores in ``out/assets`` (see ``assets.py``) each shape's mesh
    file as GLB (its point cloud where the file is not found: see the ``asset_note`` column) and a
    thumbnail PNG: a built dataset's image, else, ``with_thumbnails``, a ``thumbnail_size``-pixel
    render of the mesh by Blender (``blender``: see ``find_blender``; ConfigError before any work
    when none is found). A mesh that fails to render keeps its code and GLB and says why in its
    asset note, unless ``strict``.

    Resumable: finished batches wait in ``.<out>.partial`` beside ``out`` and renders in the
    hf-cmah cache, and are reused when the same build runs again; the partial folder is removed
    once the index is saved. Returns ``(index, failures)``, failures being ``(shape_id, message)``
    of files that could not be read.
    """
    from .shape_index import ShapeIndex
    from .thumbnails import check_renderer

    out = Path(out)
    if isinstance(library, (str, Path)):
        library = ShapeLibrary(list_mesh_folder(library))
    elif hasattr(library, "column_names"):  # a datasets.Dataset / DatasetDict
        library = dataset_library(library, mesh_root)
    else:
        library = ShapeLibrary(list(library))
    renders = with_assets and with_thumbnails and library.read_images is None
    if renders and any(library.mesh_file(record)[0] is not None for record in library.records):
        check_renderer(blender)  # before any encoding, which can take hours
    encoder = ShapeEncoder(model, processor, device=device, batch_size=batch_size)
    work_dir = out.parent / f".{out.name}.partial"
    encoded = encoder.encode_library(library, work_dir, strict=strict, progress=progress, with_assets=with_assets)
    if renders:
        _add_rendered_thumbnails(
            encoded, library, work_dir, size=thumbnail_size, blender=blender, strict=strict, progress=progress
        )
    index = ShapeIndex.from_codes(
        encoded.codes,
        [record.shape_id for record in encoded.records],
        encoder.code_bits,
        labels=[record.label for record in encoded.records],
        sources=[record.source for record in encoded.records],
        thumbnails=encoded.thumbnails,
        meshes=encoded.meshes,
        asset_notes=encoded.asset_notes,
        embeddings=encoded.embeddings if with_embeddings else None,
        fingerprint=encoder.fingerprint,
    )
    index.asset_root = work_dir  # the assets are linked from here into `out`
    index.save(out)
    shutil.rmtree(work_dir)
    index.encoder = encoder
    return index, encoded.failures


def _add_rendered_thumbnails(encoded: EncodedLibrary, library: ShapeLibrary, work_dir: Path, **options) -> None:
    """Render a thumbnail of each kept shape whose mesh file is on disk and stored as its GLB; a failure is noted."""
    from .thumbnails import render_thumbnails

    rows = {record.shape_id: row for row, record in enumerate(encoded.records)}
    meshes = {}
    for record, note in zip(encoded.records, encoded.asset_notes):
        mesh_file, _ = library.mesh_file(record)
        if mesh_file is not None and note is None:
            meshes[record.shape_id] = mesh_file
    names, notes = render_thumbnails(meshes, work_dir, **options)
    for shape_id, name in names.items():
        encoded.thumbnails[rows[shape_id]] = name
    for shape_id, note in notes.items():
        encoded.asset_notes[rows[shape_id]] = note


def load_retriever(name: str):
    """``(model, processor)`` of a saved retriever (local folder or Hub id), the model in eval mode.

    The processor is the one saved beside the model; a local folder without one gets None,
    which the encoder replaces with the model config's defaults.
    """
    from transformers import AutoModel, AutoProcessor

    import hf_cmah  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(name).eval()
    if Path(name).is_dir() and not (Path(name) / "preprocessor_config.json").is_file():
        return model, None
    return model, AutoProcessor.from_pretrained(name)


__all__ = [
    "EncodedLibrary",
    "ShapeEncoder",
    "ShapeLibrary",
    "ShapeRecord",
    "build_index",
    "dataset_library",
    "list_mesh_folder",
    "load_retriever",
]
