"""``build_index``: a shape library and a model in, a saved :class:`~.shape_index.ShapeIndex` out.

The library is scanned or read by :mod:`.library`, encoded batch by batch by
:class:`~.encoding.ShapeEncoder` (resumable), given rendered thumbnails by :mod:`.thumbnails`
where it has no images, and saved atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .encoding import EncodedLibrary, ShapeEncoder
from .library import ShapeLibrary, as_library
from .shape_index import ShapeIndex
from .thumbnails import check_renderer, render_thumbnails


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
    out = Path(out)
    library = as_library(library, mesh_root)
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


__all__ = ["build_index"]
