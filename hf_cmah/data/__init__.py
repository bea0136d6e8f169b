"""Shape datasets: builders for common layouts, the shared build pipeline, pairing and publishing.

``hf-cmah data build`` is the command-line way in; from Python::

    from hf_cmah.data import BuildSettings, build_to_folder, collect_source, load_built_dataset, select_views

    folder, result = build_to_folder(collect_source("procedural", None), BuildSettings())
    train = load_built_dataset(folder)["train"]
    epoch_rows = select_views(train, epoch=0, seed=0)
"""

from .build import BuildResult, BuildSettings, build_dataset, build_to_folder
from .builders import BUILDERS, collect_source
from .cache import cache_root, unpack_archive
from .features import shape_features
from .pairing import group_views, select_view_rows, select_views
from .publish import check_publishable, push_dataset
from .records import Failure, ImageRecord, ShapeRecord, ShapeSource
from .storage import load_built_dataset, read_build_info, write_dataset

__all__ = [
    "BUILDERS",
    "BuildResult",
    "BuildSettings",
    "Failure",
    "ImageRecord",
    "ShapeRecord",
    "ShapeSource",
    "build_dataset",
    "build_to_folder",
    "cache_root",
    "check_publishable",
    "collect_source",
    "group_views",
    "load_built_dataset",
    "push_dataset",
    "read_build_info",
    "select_view_rows",
    "select_views",
    "shape_features",
    "unpack_archive",
    "write_dataset",
]
