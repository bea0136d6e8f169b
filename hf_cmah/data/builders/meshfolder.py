"""``meshfolder``: a folder of class sub-folders of meshes, the layout users bring.

::

    root/<class>/**/<name>.<obj|off|ply|stl|glb|gltf>        split drawn by hash
    root/<train|test>/<class>/**/<name>.<ext>                 split given by the folder

Mesh files lying directly in ``root`` are shapes without a label. The hash split is a
deterministic function of the shape id and ``seed``, so adding files never moves others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...errors import InvalidInputError
from ...geometry import MESH_SUFFIXES
from ..records import ShapeRecord, ShapeSource

SPLIT_FOLDERS = ("train", "validation", "test")


def collect(root: str | Path, test_fraction: float = 0.2, seed: int = 0, up_axis: str = "y") -> ShapeSource:
    """Scan ``root``; ``test_fraction`` applies only when there are no train/test folders."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a folder of meshes")
    if not 0.0 <= test_fraction < 1.0:
        raise InvalidInputError(f"test_fraction: expected a number in [0, 1), got {test_fraction}")
    split_roots = [root / name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    records = []
    for split_root in split_roots or [root]:
        for path in sorted(mesh_files(split_root)):
            relative = path.relative_to(split_root)
            label = relative.parts[0] if len(relative.parts) > 1 else None
            shape_id = relative.with_suffix("").as_posix()
            split = split_root.name if split_roots else hash_split(shape_id, test_fraction, seed)
            records.append(
                ShapeRecord(
                    shape_id=f"{split_root.name}/{shape_id}" if split_roots else shape_id,
                    split=split,
                    label=label,
                    mesh_path=path,
                    up_axis=up_axis,
                    display_path=path.relative_to(root).as_posix(),
                )
            )
    if not records:
        raise InvalidInputError(f"{root}: no mesh files ({', '.join(MESH_SUFFIXES)}) found")
    class_names = sorted({record.label for record in records if record.label is not None})
    return ShapeSource(
        name="meshfolder",
        records=records,
        class_names=class_names,
        licence="unknown (the licence of the meshes in the folder)",
        description=f"Meshes from the folder `{root.name}`, one class per sub-folder.",
    )


def mesh_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` whose suffix is a mesh format (case-insensitive), hidden files skipped."""
    return [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in MESH_SUFFIXES and path.is_file() and not path.name.startswith(".")
    ]


def hash_split(shape_id: str, test_fraction: float, seed: int) -> str:
    """``"test"`` for a stable ``test_fraction`` of shape ids, ``"train"`` for the rest."""
    digest = hashlib.sha256(f"{seed}:{shape_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


__all__ = ["collect", "hash_split", "mesh_files"]
