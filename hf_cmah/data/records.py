"""What a builder finds in a dataset layout: shapes, their split, label, files and images.

Builders only scan layouts and return a :class:`ShapeSource`; the shared pipeline in
:mod:`hf_cmah.data.build` turns it into points, renders and a ``DatasetDict``. Problems
found while scanning (a missing split list entry, an unreadable annotation) are returned
as :class:`Failure` items so the pipeline can report them with the per-mesh errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trimesh


@dataclass(frozen=True)
class ImageRecord:
    """An image that already exists for a shape (a photo, a mask, a prior rendering)."""

    path: Path
    kind: str
    view: dict | None = None


@dataclass(frozen=True)
class ShapeRecord:
    """One shape: where its geometry comes from, its split and label, and images it comes with.

    Geometry comes from ``points_path`` (official point files) or else ``mesh_path`` /
    ``make_mesh``; a mesh, when there is one, is also what gets rendered.
    """

    shape_id: str
    split: str
    label: str | None = None
    mesh_path: Path | None = None
    points_path: Path | None = None
    make_mesh: Callable[[], trimesh.Trimesh] | None = None
    cache_key: str | None = None
    images: tuple[ImageRecord, ...] = ()
    thumbnail: Path | None = None
    up_axis: str = "y"
    display_path: str = ""

    @property
    def renderable(self) -> bool:
        return self.mesh_path is not None or self.make_mesh is not None


@dataclass(frozen=True)
class Failure:
    """A shape (or layout entry) that was skipped, with the reason shown to the user."""

    shape_id: str
    path: str
    error: str

    def __str__(self) -> str:
        return f"{self.shape_id} ({self.path}): {self.error}"


@dataclass
class ShapeSource:
    """Everything a builder found, plus the facts the dataset card and ``data push`` need."""

    name: str
    records: list[ShapeRecord]
    class_names: list[str]
    licence: str
    description: str = ""
    citation: str = ""
    homepage: str = ""
    publishable: bool = True
    failures: list[Failure] = field(default_factory=list)


__all__ = ["Failure", "ImageRecord", "ShapeRecord", "ShapeSource"]
