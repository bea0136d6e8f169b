"""``psb``: the Princeton Shape Benchmark's ``db/`` layout with its official classification.

::

    benchmark/db/<ID // 100>/m<ID>/m<ID>.off        + m<ID>_thumb.jpg (the PSB's 160×120 render)
    benchmark/classification/v1/base/train.cla      official train split, leaf classes
    benchmark/classification/v1/base/test.cla       official test split

``root`` may be the unpacked folder, the ``benchmark/`` folder, a ``.tar.*`` archive of it,
or a folder holding such an archive (``../shared/data/psb_v1_mini``), which is unpacked once
into the cache. ``subset_train.cla`` / ``subset_test.cla`` beside ``benchmark/`` (the mini
subset) take precedence over the complete official files. A model's label is the class
whose block lists it. The PSB may not be redistributed, so its datasets are marked
unpublishable and ``hf-cmah data push`` refuses them.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidInputError
from ..cache import unpack_archive
from ..records import Failure, ShapeRecord, ShapeSource

SPLITS = ("train", "test")
LICENCE = (
    "Princeton Shape Benchmark terms: academic research use only, no commercial use, "
    "no redistribution without permission (Copyright 2003 Princeton University)"
)
CITATION = (
    "Philip Shilane, Patrick Min, Michael Kazhdan, Thomas Funkhouser. The Princeton Shape Benchmark. "
    "Shape Modeling International, 2004."
)


def collect(root: str | Path) -> ShapeSource:
    """Scan a PSB tree (unpacking it first if needed) into train/test records with leaf labels."""
    top, benchmark = locate(Path(root))
    records: list[ShapeRecord] = []
    failures: list[Failure] = []
    class_names: set[str] = set()
    for split in SPLITS:
        cla = classification_file(top, benchmark, split)
        for model_id, label in parse_cla(cla).items():
            class_names.add(label)
            folder = benchmark / "db" / str(model_id // 100) / f"m{model_id}"
            mesh = folder / f"m{model_id}.off"
            display = mesh.relative_to(top).as_posix()
            if not mesh.is_file():
                failures.append(Failure(f"m{model_id}", display, f"listed in {cla.name} but the .off file is missing"))
                continue
            thumbnail = folder / f"m{model_id}_thumb.jpg"
            records.append(
                ShapeRecord(
                    shape_id=f"m{model_id}",
                    split=split,
                    label=label,
                    mesh_path=mesh,
                    thumbnail=thumbnail if thumbnail.is_file() else None,
                    display_path=display,
                )
            )
    return ShapeSource(
        name="psb",
        records=records,
        class_names=sorted(class_names),
        licence=LICENCE,
        description="Princeton Shape Benchmark v1 models with the official base classification and split.",
        citation=CITATION,
        homepage="http://shape.cs.princeton.edu/benchmark/",
        publishable=False,
        failures=failures,
    )


def locate(root: Path) -> tuple[Path, Path]:
    """(folder that holds ``benchmark/`` and any subset files, the ``benchmark`` folder itself)."""
    if root.is_file():
        root = unpack_archive(root)
    elif root.is_dir() and not _is_benchmark(root) and not _is_benchmark(root / "benchmark"):
        archives = sorted(root.glob("*.tar*"))
        if archives:
            root = unpack_archive(archives[0])
    if _is_benchmark(root / "benchmark"):
        return root, root / "benchmark"
    if _is_benchmark(root):
        return root.parent, root
    raise InvalidInputError(f"{root}: not a PSB tree (expected benchmark/db/ and benchmark/classification/)")


def _is_benchmark(folder: Path) -> bool:
    return (folder / "db").is_dir() and (folder / "classification").is_dir()


def classification_file(top: Path, benchmark: Path, split: str) -> Path:
    subset = top / f"subset_{split}.cla"
    if subset.is_file():
        return subset
    official = benchmark / "classification" / "v1" / "base" / f"{split}.cla"
    if not official.is_file():
        raise InvalidInputError(f"{official}: the official {split} classification file is missing")
    return official


def parse_cla(path: Path) -> dict[int, str]:
    """``{model id: class name}`` from a PSB ``.cla`` file (``PSB 1``, counts, then class blocks)."""
    lines = [line.split() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines or lines[0][:1] != ["PSB"] or len(lines) < 2 or len(lines[1]) != 2:
        raise InvalidInputError(f"{path}: not a PSB .cla file (expected 'PSB 1' and a count line)")
    members: dict[int, str] = {}
    position = 2
    while position < len(lines):
        block = lines[position]
        if len(block) != 3 or not block[2].isdigit():
            raise InvalidInputError(f"{path}: expected '<class> <parent> <count>' at entry {position + 1}: {block}")
        name, count = block[0], int(block[2])
        ids = lines[position + 1 : position + 1 + count]
        if len(ids) != count or any(len(entry) != 1 or not entry[0].isdigit() for entry in ids):
            raise InvalidInputError(f"{path}: class {name!r} should list {count} model ids")
        members.update((int(entry[0]), name) for entry in ids)
        position += 1 + count
    return members


__all__ = ["collect", "locate", "parse_cla"]
