"""Turning a shape library into codes: batched, on the GPU when there is one, resumable.

:class:`ShapeEncoder` runs a retriever through the one batch encoder
(:func:`hf_cmah.evaluation.encoding.encode_batch`) and encodes a :class:`~.library.ShapeLibrary`
batch by batch: each finished batch goes to ``.<out>.partial/batch-NNNNNN.npz`` (atomically), so a
killed build restarts at the first missing batch. The partial folder remembers which model and
which list of shapes it belongs to and is ignored when either changed. With assets, each shape's
mesh file is stored as GLB (its point cloud where it has none, said in its ``asset_note``).
:func:`~.build.build_index` puts it together.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..codes import pack_codes
from ..errors import InvalidInputError, MeshLoadError
from .library import RowReader, ShapeLibrary
from .storage import ModelFingerprint

if TYPE_CHECKING:
    from ..data.records import ShapeRecord

# Bump when a batch file's keys change, so that a partial build of an older hf_cmah starts afresh.
BATCH_FORMAT = 2


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
        return self._run("image", images)

    def encode_shapes(self, shapes: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Packed codes and float32 embeddings of point clouds ``[N, 3|6]`` or trimesh meshes."""
        return self._run("shape", shapes)

    def _run(self, modality: str, items: Sequence) -> tuple[np.ndarray, np.ndarray]:
        from ..evaluation.encoding import encode_batch

        codes, embeds = encode_batch(self.model, self.processor, modality, items, self.device)
        return pack_codes(codes), embeds

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
        into ``work_dir/assets``; thumbnails of the others are rendered afterwards (:func:`~.build.build_index`)."""
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
                clouds.append(record.load_points(self.processor.num_points, seed=self.processor.seed))
                kept.append(record.shape_id)
            except MeshLoadError as error:
                if strict:
                    raise MeshLoadError(f"--strict: {record.shape_id}: {error}") from error
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


__all__ = ["EncodedLibrary", "ShapeEncoder", "load_retriever"]
