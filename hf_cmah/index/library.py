"""What an index build encodes: a :class:`ShapeLibrary` of records, from a mesh folder or a built dataset.

Records are :class:`hf_cmah.data.records.ShapeRecord`, the one record type of the package; a mesh
folder is scanned by the one scanner, :func:`hf_cmah.data.builders.meshfolder.collect` (class
sub-folders, linked folders followed, mesh and point files), so `hf-cmah data build meshfolder`
and `hf-cmah index build` see the same shapes with the same ids and labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from ..geometry import MESH_SUFFIXES

if TYPE_CHECKING:
    from ..data.records import ShapeRecord

# Why a shape's GLB is its point cloud (its `asset_note`); `hf-cmah index build` counts them.
POINT_FILE_NOTE = "a point file: the GLB holds its points, and it has no surface to render a thumbnail of"
MESH_NOT_FOUND_NOTE = "mesh file not found: the GLB holds the point cloud"

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
        if self.read_clouds is None:  # a file of the library itself, read already
            return (record.mesh_path, None) if record.mesh_path is not None else (None, POINT_FILE_NOTE)
        path = Path(record.display_path)
        path = path if path.is_absolute() else (self.mesh_root or Path()) / path
        if record.display_path and path.suffix.lower() in MESH_SUFFIXES and path.is_file():
            return path, None
        return None, MESH_NOT_FOUND_NOTE


def as_library(library, mesh_root: str | Path | None = None) -> ShapeLibrary:
    """A mesh folder (path), a built ``datasets.Dataset`` or a list of records, as a :class:`ShapeLibrary`."""
    if isinstance(library, (str, Path)):
        from ..data.builders.meshfolder import collect

        return ShapeLibrary(collect(library).records)
    if hasattr(library, "column_names"):  # a datasets.Dataset / DatasetDict
        return dataset_library(library, mesh_root)
    return ShapeLibrary(list(library))


def dataset_library(dataset, mesh_root: str | Path | None = None) -> ShapeLibrary:
    """A built dataset (a row per shape × view) as one record per shape, sorted by id, with readers of its rows.

    Each shape's first row gives its points, its label (a ``ClassLabel`` name; -1 → None), its
    source (``mesh_path``, else ``source``: the mesh file, relative to ``mesh_root`` unless absolute)
    and its thumbnail (``thumbnail``, else ``image``: a render).
    """
    import datasets

    from ..data.records import ShapeRecord
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
    split = str(dataset.split or "")
    records = [
        ShapeRecord(shape_id, split, label, display_path=source)
        for shape_id, source, label in zip(shapes["shape_id"], sources, labels)
    ]
    clouds = shapes.with_format("numpy", columns=["points"])
    image_column = next((name for name in ("thumbnail", "image") if name in columns), None)
    return ShapeLibrary(
        records,
        lambda start, stop: list(clouds[start:stop]["points"]),
        (lambda start, stop: list(shapes[start:stop][image_column])) if image_column else None,
        Path(mesh_root) if mesh_root is not None else None,
    )


def list_mesh_folder(root: str | Path) -> list[ShapeRecord]:
    """Deprecated: the records of :func:`hf_cmah.data.builders.meshfolder.collect`, the one scanner."""
    from ..data.builders.meshfolder import collect

    warnings.warn(
        "hf_cmah.index.list_mesh_folder is deprecated and will be removed in the next release: "
        "use hf_cmah.data.builders.meshfolder.collect(root).records",
        FutureWarning,
        stacklevel=2,
    )
    return collect(root).records


def file_record(shape_id: str, source: str | Path, label: str | None = None) -> ShapeRecord:
    """Deprecated: what ``hf_cmah.index.ShapeRecord(shape_id, source, label)`` made, as the one record type."""
    from ..data.records import ShapeRecord

    warnings.warn(
        "hf_cmah.index.ShapeRecord(shape_id, source, label) is deprecated and will be removed in the next "
        "release: use hf_cmah.data.records.ShapeRecord(shape_id, split, label, mesh_path=... or points_path=...)",
        FutureWarning,
        stacklevel=2,
    )
    path = Path(source)
    geometry = {"mesh_path": path} if path.suffix.lower() in MESH_SUFFIXES else {"points_path": path}
    return ShapeRecord(shape_id, "", label, **geometry, display_path=str(source))


__all__ = [
    "MESH_NOT_FOUND_NOTE",
    "POINT_FILE_NOTE",
    "ShapeLibrary",
    "as_library",
    "dataset_library",
    "file_record",
    "list_mesh_folder",
]
