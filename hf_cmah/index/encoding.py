"""Turning a shape library into codes: batched, on the GPU when there is one, resumable.

A build writes each finished batch to ``.<out>.partial/batch-NNNNNN.npz`` (atomically), so a
killed build restarts at the first missing batch. The partial folder remembers which model
and which list of shapes it belongs to and is ignored when either changed.
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

import numpy as np

from ..codes import pack_codes
from ..errors import InvalidInputError, MeshLoadError
from ..geometry import MESH_SUFFIXES, POINT_SUFFIXES, load_points
from .storage import ModelFingerprint


@dataclass(frozen=True)
class ShapeRecord:
    """One library entry: a unique id, the file it comes from, and an optional class label."""

    shape_id: str
    source: str
    label: str | None = None


@dataclass
class EncodedLibrary:
    """Codes and embeddings of the shapes that encoded, plus ``(shape_id, message)`` for those that failed."""

    records: list[ShapeRecord]
    codes: np.ndarray
    embeddings: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)


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
        self, records: Sequence[ShapeRecord], work_dir: Path, strict: bool = False, progress: bool = True
    ) -> EncodedLibrary:
        """Encode every record's file; finished batches in ``work_dir`` are reused, not recomputed."""
        from tqdm.auto import tqdm

        work_dir = _prepare_work_dir(work_dir, self.fingerprint, records, self.batch_size)
        starts = range(0, len(records), self.batch_size)
        for number, start in enumerate(tqdm(starts, desc="encoding shapes", unit="batch", disable=not progress)):
            batch_file = work_dir / f"batch-{number:06d}.npz"
            if not batch_file.exists():
                self._encode_batch(records[start : start + self.batch_size], batch_file, strict)
        return _collect_batches(records, work_dir, len(starts))

    def _encode_batch(self, batch: Sequence[ShapeRecord], batch_file: Path, strict: bool) -> None:
        clouds, kept, failures = [], [], []
        for record in batch:
            try:
                clouds.append(load_points(record.source, self.processor.num_points, seed=self.processor.seed))
                kept.append(record.shape_id)
            except MeshLoadError as error:
                if strict:
                    raise
                failures.append([record.shape_id, str(error)])
        codes = np.zeros((0, self.code_bits // 8), np.uint8)
        embeds = np.zeros((0, 0), np.float32)
        if clouds:
            codes, embeds = self.encode_shapes(clouds)
        temp = batch_file.with_suffix(".tmp.npz")
        np.savez(temp, codes=codes, embeds=embeds, ids=np.array(kept, dtype=str), failures=json.dumps(failures))
        os.replace(temp, batch_file)


def _prepare_work_dir(work_dir: Path, fingerprint: ModelFingerprint, records, batch_size: int) -> Path:
    """Create ``work_dir``, or empty it when it belongs to another model, library or batch size."""
    ids = "\n".join(f"{record.shape_id}\t{record.source}" for record in records)
    identity = {
        "config_hash": fingerprint.config_hash,
        "weights_hash": fingerprint.weights_hash,
        "records_sha256": hashlib.sha256(ids.encode()).hexdigest(),
        "batch_size": batch_size,
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
    for number in range(count):
        with np.load(work_dir / f"batch-{number:06d}.npz") as batch:
            kept.extend(by_id[shape_id] for shape_id in batch["ids"].tolist())
            if len(batch["ids"]):
                codes.append(batch["codes"])
                embeds.append(batch["embeds"])
            failures.extend(tuple(item) for item in json.loads(str(batch["failures"])))
    if not kept:
        raise InvalidInputError(f"no shape could be encoded; first error: {failures[0][1] if failures else 'none'}")
    return EncodedLibrary(kept, np.concatenate(codes), np.concatenate(embeds), failures)


def build_index(
    model,
    library: str | Path | Sequence[ShapeRecord],
    out: str | Path,
    *,
    processor=None,
    device: str | None = None,
    batch_size: int = 32,
    with_embeddings: bool = True,
    strict: bool = False,
    progress: bool = True,
):
    """Encode a mesh folder (or a list of :class:`ShapeRecord`) and save a ShapeIndex at ``out``.

    Resumable: finished batches wait in ``.<out>.partial`` beside ``out`` and are reused when the
    same build runs again; the folder is removed once the index is saved. Returns
    ``(index, failures)``, failures being ``(shape_id, message)`` of files that could not be read.
    """
    from .shape_index import ShapeIndex

    out = Path(out)
    records = list_mesh_folder(library) if isinstance(library, (str, Path)) else list(library)
    encoder = ShapeEncoder(model, processor, device=device, batch_size=batch_size)
    work_dir = out.parent / f".{out.name}.partial"
    encoded = encoder.encode_library(records, work_dir, strict=strict, progress=progress)
    index = ShapeIndex.from_codes(
        encoded.codes,
        [record.shape_id for record in encoded.records],
        encoder.code_bits,
        labels=[record.label for record in encoded.records],
        sources=[record.source for record in encoded.records],
        embeddings=encoded.embeddings if with_embeddings else None,
        fingerprint=encoder.fingerprint,
    )
    index.save(out)
    shutil.rmtree(work_dir)
    index.encoder = encoder
    return index, encoded.failures


__all__ = ["EncodedLibrary", "ShapeEncoder", "ShapeRecord", "build_index", "list_mesh_folder"]
