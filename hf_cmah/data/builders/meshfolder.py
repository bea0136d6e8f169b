"""``meshfolder``: a folder of class sub-folders of meshes (or point files), the layout users bring.

::

    root/<class>/**/<name>.<obj|off|ply|stl|glb|gltf|npy|npz|xyz|pts|txt>   split drawn by hash
    root/<train|test>/<class>/**/<name>.<ext>                                  split given by the folder

Files lying directly in ``root`` are shapes without a label. Linked folders are followed (each
real folder once); hidden files and folders are skipped. The hash split is a deterministic
function of the shape id and ``seed``, so adding files never moves others. This is the one
scanner of a mesh folder: `hf-cmah data build meshfolder` and `hf-cmah index build` both use it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from ...errors import InvalidInputError
from ...geometry import MESH_SUFFIXES, POINT_SUFFIXES
from ..records import ShapeRecord, ShapeSource

SPLIT_FOLDERS = ("train", "validation", "test")
SHAPE_SUFFIXES = MESH_SUFFIXES + POINT_SUFFIXES


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
        for path in shape_files(split_root):
            relative = path.relative_to(split_root)
            label = relative.parts[0] if len(relative.parts) > 1 else None
            shape_id = relative.with_suffix("").as_posix()
            split = split_root.name if split_roots else hash_split(shape_id, test_fraction, seed)
            geometry = {"mesh_path": path} if path.suffix.lower() in MESH_SUFFIXES else {"points_path": path}
            records.append(
                ShapeRecord(
                    shape_id=f"{split_root.name}/{shape_id}" if split_roots else shape_id,
                    split=split,
                    label=label,
                    **geometry,
                    up_axis=up_axis,
                    display_path=path.relative_to(root).as_posix(),
                )
            )
    if not records:
        raise InvalidInputError(
            f"{root}: no mesh files ({', '.join(MESH_SUFFIXES)}) or point files ({', '.join(POINT_SUFFIXES)}) found"
        )
    class_names = sorted({record.label for record in records if record.label is not None})
    return ShapeSource(
        name="meshfolder",
        records=records,
        class_names=class_names,
        licence="unknown (the licence of the meshes in the folder)",
        description=f"Meshes from the folder `{root.name}`, one class per sub-folder.",
    )


def shape_files(folder: Path, suffixes: Sequence[str] = SHAPE_SUFFIXES) -> list[Path]:
    """Every file under ``folder`` whose suffix is one of ``suffixes`` (case-insensitive), sorted.

    Linked folders are followed, as a library of linked class folders is common; a real folder
    reached twice (a link loop, two links to one folder) is walked once. Hidden files and folders
    (``.git``, an index build's ``.partial`` folder) are skipped, and so are ``.txt`` files that do
    not start with a row of numbers.
    """
    found, seen = [], {os.path.realpath(folder)}
    for top, folders, names in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(folders):
            real = os.path.realpath(os.path.join(top, name))
            if not name.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(name)
        folders[:] = kept  # os.walk descends into these only
        found += [path for path in (Path(top) / name for name in names) if _is_shape_file(path, suffixes)]
    return sorted(found)


def _is_shape_file(path: Path, suffixes: Sequence[str]) -> bool:
    """A visible file of one of ``suffixes``; a ``.txt`` only when its first line is a row of numbers, since a
    README or a licence beside the meshes is no point cloud."""
    if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
        return False
    if path.suffix.lower() != ".txt":
        return True
    with open(path, "rb") as handle:
        first_row = handle.readline(4096).replace(b",", b" ").split()
    try:
        [float(value) for value in first_row]
    except ValueError:
        return False
    return bool(first_row)


def hash_split(shape_id: str, test_fraction: float, seed: int) -> str:
    """``"test"`` for a stable ``test_fraction`` of shape ids, ``"train"`` for the rest."""
    digest = hashlib.sha256(f"{seed}:{shape_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


__all__ = ["SHAPE_SUFFIXES", "collect", "hash_split", "shape_files"]
