"""Image–point pairing as CMAH training needs it: every shape once per epoch, with a random view.

A built dataset has one row per (shape, image). Training on every row would weigh shapes
by their number of views and show the same pair each epoch; instead each epoch takes one
(or ``views_per_shape``) of each shape's rows, drawn from a generator seeded by
``(seed, epoch)`` — reproducible, and different from epoch to epoch.
"""

from __future__ import annotations

from collections import defaultdict

import datasets
import numpy as np

from ..errors import InvalidInputError


def group_views(dataset: datasets.Dataset) -> dict[str, list[int]]:
    """``{shape_id: [row indices]}`` in the order the shapes first appear."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, shape_id in enumerate(dataset["shape_id"]):
        groups[shape_id].append(row)
    return dict(groups)


def select_view_rows(views: dict[str, list[int]], epoch: int, seed: int = 0, views_per_shape: int = 1) -> list[int]:
    """Sorted row indices of one epoch from `group_views`' ``{shape_id: rows}``: ``views_per_shape``
    distinct random views of every shape (fewer if it has fewer)."""
    if views_per_shape < 1:
        raise InvalidInputError(f"views_per_shape: expected a positive number, got {views_per_shape}")
    rng = np.random.default_rng([seed, epoch])
    chosen = []
    for rows in views.values():
        count = min(views_per_shape, len(rows))
        chosen.extend(int(row) for row in rng.choice(rows, size=count, replace=False))
    return sorted(chosen)


def select_views(dataset: datasets.Dataset, epoch: int, seed: int = 0, views_per_shape: int = 1) -> datasets.Dataset:
    """The rows of one epoch (`select_view_rows`) as a dataset."""
    return dataset.select(select_view_rows(group_views(dataset), epoch, seed, views_per_shape))


__all__ = ["group_views", "select_view_rows", "select_views"]
