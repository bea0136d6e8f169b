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

import numpy as np
import trimesh

from ..errors import InvalidInputError
from ..geometry import load_mesh, load_points, normalize_mesh, sample_points


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
    ``make_mesh``; a mesh, when there is one, is also what gets rendered. A record of a built
    dataset's row (an index library) has none of the three: its points are in the row, and
    ``display_path`` names the mesh file it was built from. ``split`` is ``""`` where there is none.
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

    @property
    def source(self) -> str:
        """The file the shape's points come from, as given (``points_path``, else ``mesh_path``), else
        ``display_path``: what an index's ``source`` column holds."""
        path = self.points_path or self.mesh_path
        return str(path) if path is not None else self.display_path

    def load_mesh(self) -> trimesh.Trimesh:
        """The shape's mesh (made, or read from ``mesh_path``), centred, scaled into the unit ball, y up."""
        if not self.renderable:
            raise InvalidInputError(f"{self.shape_id}: no mesh to load (neither mesh_path nor make_mesh)")
        mesh = self.make_mesh() if self.make_mesh is not None else load_mesh(self.mesh_path)
        return normalize_mesh(mesh, up_axis=self.up_axis)

    def load_points(
        self, num_points: int, seed: int = 0, with_colors: bool = False, mesh: trimesh.Trimesh | None = None
    ) -> np.ndarray:
        """``num_points`` normalised points: read from ``points_path``, else sampled from ``mesh`` (this
        record's :meth:`load_mesh`, when the caller holds it already) or from the record's own mesh.

        The one loader of both `hf-cmah data build` and `hf-cmah index build`: a bad file raises
        :class:`~hf_cmah.errors.MeshLoadError` naming it.
        """
        if self.points_path is not None:
            return load_points(self.points_path, num_points, seed, with_colors, self.up_axis)
        if mesh is None and self.mesh_path is not None:  # a PLY there may hold points only: geometry reads both
            return load_points(self.mesh_path, num_points, seed, with_colors, self.up_axis)
        mesh = mesh if mesh is not None else self.load_mesh()
        return sample_points(mesh, num_points, seed=seed, with_colors=with_colors)


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
