"""``shapenet55``: the ShapeNet-55 benchmark (Point-BERT): official point files and split lists.

::

    root/shapenet_pc/<synset>-<model>.npy      8,192 points per shape
    root/ShapeNet-55/train.txt, test.txt       one "<synset>-<model>.npy" per line

(``train.txt``/``test.txt`` directly in ``root`` work too.) Points come from the ``.npy``
files. With ``meshes=`` a ShapeNetCore folder (``<synset>/<model>/models/model_normalized.obj``
or ``<synset>/<model>/model.obj``), each shape's views are rendered from its source mesh;
shapes without a mesh there are kept point-only. Labels are the synset ids. ShapeNet's
terms forbid redistribution, so the datasets are marked unpublishable.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidInputError
from ..records import Failure, ShapeRecord, ShapeSource

SPLITS = ("train", "test")
MESH_NAMES = ("models/model_normalized.obj", "model.obj")
LICENCE = "ShapeNet terms of use: non-commercial research and education only; no redistribution"
CITATION = (
    "Angel X. Chang et al. ShapeNet: An Information-Rich 3D Model Repository. arXiv:1512.03012, 2015. "
    "Xumin Yu et al. Point-BERT. CVPR 2022 (the ShapeNet-55 split)."
)


def collect(root: str | Path, meshes: str | Path | None = None) -> ShapeSource:
    """Records for every entry of both split lists; entries without a point file are reported."""
    root = Path(root)
    points_dir = root / "shapenet_pc"
    if not points_dir.is_dir():
        raise InvalidInputError(f"{root}: not a ShapeNet-55 tree (no shapenet_pc/ folder of .npy files)")
    records, failures = [], []
    for split in SPLITS:
        for name in _split_entries(root, split):
            synset, _, model = Path(name).stem.partition("-")
            points = points_dir / name
            if not points.is_file():
                failures.append(Failure(Path(name).stem, f"shapenet_pc/{name}", f"listed in {split}.txt but missing"))
                continue
            records.append(
                ShapeRecord(
                    shape_id=Path(name).stem,
                    split=split,
                    label=synset,
                    points_path=points,
                    mesh_path=_find_mesh(Path(meshes), synset, model) if meshes else None,
                    display_path=f"shapenet_pc/{name}",
                )
            )
    return ShapeSource(
        name="shapenet55",
        records=records,
        class_names=sorted({record.label for record in records}),
        licence=LICENCE,
        description="ShapeNet-55 point clouds with the official Point-BERT split.",
        citation=CITATION,
        homepage="https://shapenet.org/",
        publishable=False,
        failures=failures,
    )


def _split_entries(root: Path, split: str) -> list[str]:
    for candidate in (root / "ShapeNet-55" / f"{split}.txt", root / f"{split}.txt"):
        if candidate.is_file():
            return [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
    raise InvalidInputError(f"{root}: the split list ShapeNet-55/{split}.txt is missing")


def _find_mesh(meshes: Path, synset: str, model: str) -> Path | None:
    for name in MESH_NAMES:
        path = meshes / synset / model / name
        if path.is_file():
            return path
    return None


__all__ = ["collect"]
