"""Built datasets on disk: the Hub's own Parquet layout, so a folder loads and pushes as it is.

::

    <folder>/README.md                      dataset card (YAML header: licence, configs)
    <folder>/build_info.json                source, licence, publishable flag, settings, failures
    <folder>/data/<split>-00000-of-00003.parquet

The Parquet files carry the ``datasets`` features in their schema metadata, so
:func:`load_built_dataset` gets ``ClassLabel``, ``Image`` and ``Array2D`` back unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq

from ..errors import InvalidInputError
from .card import dataset_card
from .records import Failure, ShapeSource

ROWS_PER_SHARD = 2000
BUILD_INFO = "build_info.json"


def write_dataset(
    dataset: datasets.DatasetDict,
    folder: str | Path,
    source: ShapeSource,
    settings: dict,
    failures: list[Failure],
) -> Path:
    """Write Parquet shards, the card and ``build_info.json``; replaces an earlier build in ``folder``."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not (folder / BUILD_INFO).is_file():
        raise InvalidInputError(f"{folder}: exists and is not an earlier build (no {BUILD_INFO}); choose another --out")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    for split, table in dataset.items():
        shards = max(1, -(-len(table) // ROWS_PER_SHARD))
        for index in range(shards):
            shard = table.shard(shards, index, contiguous=True)
            shard.to_parquet(str(staging / "data" / f"{split}-{index:05d}-of-{shards:05d}.parquet"))
    info = {
        "source": source.name,
        "licence": source.licence,
        "publishable": source.publishable,
        "homepage": source.homepage,
        "citation": source.citation,
        "class_names": source.class_names,
        "settings": settings,
        "splits": {split: len(table) for split, table in dataset.items()},
        "failures": [{"shape_id": f.shape_id, "path": f.path, "error": f.error} for f in failures],
    }
    (staging / BUILD_INFO).write_text(json.dumps(info, indent=1, default=str))
    (staging / "README.md").write_text(dataset_card(dataset, info, source.description))
    # Swap in the finished folder only at the end, so readers never see half a dataset.
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def read_build_info(folder: str | Path) -> dict:
    """The ``build_info.json`` of a built dataset folder."""
    path = Path(folder) / BUILD_INFO
    if not path.is_file():
        raise InvalidInputError(f"{folder}: not a dataset built by `hf-cmah data build` (no {BUILD_INFO})")
    return json.loads(path.read_text())


def load_built_dataset(folder: str | Path) -> datasets.DatasetDict:
    """Load a built folder, or a Hub repo id pushed with ``hf-cmah data push``, as a ``DatasetDict``.

    Local folders are read straight from their Parquet shards: ``datasets.load_dataset`` on
    a folder may serve an older build from its own cache after a rebuild in the same place.
    """
    folder_path = Path(folder)
    if not folder_path.exists():
        return datasets.load_dataset(str(folder))
    shards = sorted((folder_path / "data").glob("*.parquet"))
    if not shards:
        raise InvalidInputError(f"{folder}: no data/*.parquet shards (not a built dataset folder)")
    by_split: dict[str, list[datasets.Dataset]] = {}
    for shard in shards:
        split = shard.name.split("-", 1)[0]
        by_split.setdefault(split, []).append(datasets.Dataset(pq.read_table(shard)))
    return datasets.DatasetDict({split: datasets.concatenate_datasets(parts) for split, parts in by_split.items()})


def unique_shape_rows(dataset) -> list[int]:
    """Index of the first row of every distinct ``shape_id`` (a built dataset has a row per view), ordered by id."""
    _, first_rows = np.unique(np.asarray(dataset["shape_id"], dtype=object), return_index=True)
    return first_rows.tolist()


__all__ = ["BUILD_INFO", "load_built_dataset", "read_build_info", "unique_shape_rows", "write_dataset"]
