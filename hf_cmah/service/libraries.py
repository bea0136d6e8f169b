"""The libraries a server holds: each a retriever and the ShapeIndex it made, loaded once at startup.

A search reads ``library.index`` once and uses that object throughout; a write builds a new
index (``copy.copy`` + ``add``/``remove``, which replace arrays rather than edit them), saves
it atomically and only then swaps the reference. Concurrent searches therefore always see one
whole index, old or new, and a crash mid-write leaves the previous folder on disk.
"""

from __future__ import annotations

import bisect
import copy
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError, InvalidInputError
from ..index import ShapeIndex, load_retriever
from ..index.assets import shape_glb, store_asset
from .errors import ConflictError, NotFoundError, NotReadyError
from .settings import LibrarySpec
from .uploads import Upload, read_shape_file, saved_uploads

logger = logging.getLogger("hf_cmah.service")
ASSET_KINDS = ("thumbnail", "mesh")


@dataclass
class Library:
    """One named library. ``index`` is replaced whole by writes; read it once per request."""

    spec: LibrarySpec
    index: ShapeIndex
    writable: bool
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def index_dir(self) -> Path:
        return Path(self.index.asset_root)

    def shape(self, shape_id: str, index: ShapeIndex | None = None) -> dict:
        """The metadata row of one shape (``shape_id``, ``label``, ``thumbnail``, ``mesh``, …); NotFoundError when
        unknown. Ids are stored sorted (contract 5), so this is a binary search: O(log N) per lookup, which a
        search's k thumbnail and mesh requests each pay."""
        index = index or self.index
        column = index.metadata.column("shape_id")
        row = bisect.bisect_left(range(len(column)), shape_id, key=lambda position: column[position].as_py())
        if row == len(column) or column[row].as_py() != shape_id:
            raise NotFoundError(f"shape_id: {shape_id!r} is not in library {self.name!r}", field="shape_id")
        return index.metadata.slice(row, 1).to_pylist()[0]

    def asset(self, shape_id: str, kind: str) -> Path:
        """The verified file of a shape's thumbnail or mesh; NotFoundError when the shape has none.

        Only names of the index's own ``assets/`` resolve (``ShapeIndex.asset_path``), so no
        shape id or metadata value can reach a file outside the folder.
        """
        index = self.index
        name = self.shape(shape_id, index)[kind]
        if not name:
            raise NotFoundError(f"{kind}: shape {shape_id!r} of library {self.name!r} has no {kind}", field=kind)
        try:
            return index.asset_path(name)
        except CorruptIndexError:
            with self.write_lock:  # a write may have been swapping the folder: once it is done, look again
                return self.index.asset_path(name)

    def add_shapes(self, uploads: list[Upload]) -> list[str]:
        """Encode uploaded meshes and add them under their ids, each with its GLB and, where a Blender renders
        on this server, a thumbnail like the library's own; the index is saved before it is searched."""
        encoder = self.index.encoder
        with saved_uploads(uploads) as paths:
            clouds = [
                read_shape_file(path, upload, encoder.processor.num_points, encoder.processor.seed)
                for path, upload in zip(paths, uploads)
            ]
            codes, embeds = encoder.encode_shapes(clouds)
            glbs = [shape_glb(path, cloud) for path, cloud in zip(paths, clouds)]
            with self.write_lock:
                current = self.index
                _check_new_ids(current, [upload.shape_id for upload in uploads])
                thumbnails, notes = self._thumbnails(uploads, paths, [reason for _, reason in glbs])
                updated = copy.copy(current)
                updated.add(
                    codes,
                    [upload.shape_id for upload in uploads],
                    labels=[upload.label for upload in uploads],
                    sources=[f"upload:{upload.filename}" for upload in uploads],
                    thumbnails=thumbnails,
                    meshes=[store_asset(self.index_dir, glb, ".glb") for glb, _ in glbs],
                    asset_notes=notes,
                    embeddings=embeds if current.embeddings is not None else None,
                )
                updated.save(self.index_dir)
                self.index = updated
        logger.info("library %s: added %d shapes, now %d", self.name, len(uploads), len(updated))
        return [upload.shape_id for upload in uploads]

    def _thumbnails(self, uploads: list[Upload], paths: list[Path], mesh_notes: list[str | None]):
        """Rendered thumbnails (asset names) of the uploads that are meshes, and a note where there is none."""
        from ..errors import ConfigError
        from ..index.thumbnails import check_renderer, render_thumbnails

        meshes = {upload.shape_id: path for upload, path, note in zip(uploads, paths, mesh_notes) if note is None}
        try:
            check_renderer()
            names, notes = render_thumbnails(meshes, self.index_dir, progress=False) if meshes else ({}, {})
        except ConfigError:
            names, notes = {}, dict.fromkeys(meshes, "no thumbnail: no Blender on the server to render one")
        for upload, note in zip(uploads, mesh_notes):
            if note is not None:
                notes[upload.shape_id] = f"no thumbnail, the GLB holds its points: {note}"
        return [names.get(upload.shape_id) for upload in uploads], [notes.get(upload.shape_id) for upload in uploads]

    def remove_shape(self, shape_id: str) -> None:
        with self.write_lock:
            self.shape(shape_id)
            updated = copy.copy(self.index)
            updated.remove([shape_id])
            updated.save(self.index_dir)
            self.index = updated
        logger.info("library %s: removed %s, now %d", self.name, shape_id, len(updated))


def _check_new_ids(index: ShapeIndex, shape_ids: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    repeated = sorted({shape_id for shape_id in shape_ids if shape_ids.count(shape_id) > 1})
    if repeated:
        raise InvalidInputError(f"shape_ids: {repeated[0]!r} is given twice in this upload")
    present = index.metadata.column("shape_id").filter(
        pc.is_in(index.metadata.column("shape_id"), value_set=pa.array(shape_ids, pa.string()))
    )
    if len(present):
        raise ConflictError(
            f"shape_ids: {present[0].as_py()!r} is already in the library; delete it first or choose another id",
            field="shape_ids",
        )


class LibraryRegistry:
    """The libraries by name, the first being the default; empty (and not ready) until loaded."""

    def __init__(self):
        self.libraries: dict[str, Library] = {}
        self.status = "starting"

    @property
    def ready(self) -> bool:
        return bool(self.libraries)

    @property
    def default(self) -> str | None:
        return next(iter(self.libraries), None)

    def load(self, specs: tuple[LibrarySpec, ...]) -> None:
        """Load every library; a model that did not make its index is refused with the reason (at startup)."""
        loaded = {}
        for spec in specs:
            self.status = f"loading {spec.name}: model {spec.model}, index {spec.index}"
            logger.info(self.status)
            model, processor = load_retriever(spec.model)
            index = ShapeIndex.from_pretrained(spec.index, model=model, processor=processor)
            loaded[spec.name] = Library(spec, index, writable=Path(spec.index).is_dir())
        self.libraries = loaded
        self.status = "ready"

    def get(self, name: str | None) -> Library:
        """The library called ``name`` (the default when None or empty)."""
        if not self.libraries:
            raise NotReadyError(f"the server is still starting: {self.status}", headers={"Retry-After": "5"})
        library = self.libraries.get(name or self.default)
        if library is None:
            raise NotFoundError(f"model: {name!r} is not served here (choose one of {sorted(self.libraries)})")
        return library


def code_hex(code: np.ndarray) -> str:
    """A packed code (``uint8 [K/8]``) as hex, the form `hf-cmah search --code` reads back."""
    return np.asarray(code, np.uint8).tobytes().hex()


__all__ = ["ASSET_KINDS", "Library", "LibraryRegistry", "code_hex"]
