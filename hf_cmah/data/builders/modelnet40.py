"""``modelnet40``: the official ModelNet40 layout and split.

::

    root/<class>/train/<class>_0001.off
    root/<class>/test/<class>_0627.off

ModelNet meshes are z-up; some OFF headers run into the counts (``OFF490 518 0``), which
the loader accepts. ModelNet's terms allow academic use only, so datasets built from it
are marked unpublishable.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidInputError
from ...geometry import MESH_SUFFIXES
from ..records import ShapeRecord, ShapeSource
from .meshfolder import shape_files

SPLITS = ("train", "test")
LICENCE = "ModelNet terms: academic research use only (Princeton ModelNet); no redistribution"
CITATION = "Zhirong Wu et al. 3D ShapeNets: A Deep Representation for Volumetric Shapes. CVPR 2015."


def collect(root: str | Path) -> ShapeSource:
    """Every ``<class>/<split>/*.off`` under ``root``; the class folder names are the labels."""
    root = Path(root)
    class_dirs = (
        sorted(path for path in root.iterdir() if path.is_dir() and any((path / s).is_dir() for s in SPLITS))
        if root.is_dir()
        else []
    )
    if not class_dirs:
        raise InvalidInputError(f"{root}: not a ModelNet40 tree (expected <class>/train/*.off and <class>/test/*.off)")
    records = []
    for class_dir in class_dirs:
        for split in SPLITS:
            for path in shape_files(class_dir / split, MESH_SUFFIXES) if (class_dir / split).is_dir() else []:
                records.append(
                    ShapeRecord(
                        shape_id=path.stem,
                        split=split,
                        label=class_dir.name,
                        mesh_path=path,
                        up_axis="z",
                        display_path=path.relative_to(root).as_posix(),
                    )
                )
    return ShapeSource(
        name="modelnet40",
        records=records,
        class_names=[path.name for path in class_dirs],
        licence=LICENCE,
        description="ModelNet40 meshes with the official train/test split.",
        citation=CITATION,
        homepage="https://modelnet.cs.princeton.edu/",
        publishable=False,
    )


__all__ = ["collect"]
