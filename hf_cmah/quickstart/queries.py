"""The three images the quickstart searches with, none of which the model trained on.

- a held-out render: a dataset view of a test-split shape;
- a relit render: a test chair rendered by the project's Blender renderer with other settings than the
  dataset's (Cycles, one low warm side light, another viewpoint) on a slate-blue background;
- a PSB thumbnail: the Princeton Shape Benchmark's own rendering of one of its models (an image nobody here
  made), from ``../shared/data/psb_v1_mini`` when it is there. The PSB may not be redistributed, so the
  thumbnail is read where the archive unpacks (the cache) and never copied.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..data.build import composite_render, mesh_file_key, render_cache_dir, write_render_mesh
from ..geometry import load_mesh, normalize_mesh
from ..render.launcher import RenderItem, RenderSettings, render_batches

RELIT_CATEGORY = "chair"
RELIT_BACKGROUND = (70, 100, 150)  # slate blue, where every dataset view is on white
PSB_ENV = "HF_CMAH_PSB"
PSB_FOLDER = Path("..") / "shared" / "data" / "psb_v1_mini"  # from the working directory: beside a checkout
# The procedural categories whose PSB classes look most like them, best first; the query is the first
# test model (by id) of the first of these the PSB copy holds.
PSB_QUERY_CATEGORIES = ("airplane", "chair", "table", "car", "lamp")


@dataclass(frozen=True)
class Query:
    """A query image, what it is, and the procedural category a correct hit has."""

    name: str
    path: Path
    label: str
    description: str


def held_out_render(test_split, path: Path) -> Query:
    """The first test row's view (a shape and a view the model never trained on), saved as ``path``."""
    row = test_split[0]
    label = test_split.features["label"].names[row["label"]]
    row["image"].convert("RGB").save(path)
    return Query("held-out render", path, label, f"a dataset render of the test shape {row['shape_id']}")


def relit_render(library_dir: Path, resolution: int, path: Path) -> Query:
    """The first test chair of the mesh library, rendered with side lighting on a blue background."""
    mesh_file = sorted((library_dir / RELIT_CATEGORY).glob("*.obj"))[0]
    settings = RenderSettings(
        engine="cycles", resolution=resolution, num_views=1, elevations=(15.0,), azimuth_offset=45.0, lighting="side"
    )
    key = mesh_file_key(mesh_file)
    view_dir = render_cache_dir(key, settings)
    if not (view_dir / "cameras.json").is_file():  # rendered once, cached as the dataset's views are
        with tempfile.TemporaryDirectory(prefix="hf-cmah-quickstart-") as workdir:
            render_mesh = Path(workdir) / "mesh.npz"
            write_render_mesh(normalize_mesh(load_mesh(mesh_file)), render_mesh)
            item = RenderItem(mesh_file.stem, render_mesh, view_dir, settings.views_for(key))
            error = render_batches([item], settings)[item.id]
        if error is not None:
            raise RuntimeError(f"{mesh_file}: the relit render failed: {error}")
    path.write_bytes(composite_render(view_dir / "view_00.png", RELIT_BACKGROUND)["bytes"])
    description = f"{mesh_file.stem} rendered with Cycles, side lighting, on slate blue, from a new viewpoint"
    return Query("relit render", path, RELIT_CATEGORY, description)


def find_psb(explicit: Path | None) -> Path | None:
    """The PSB mini folder: ``--psb``, else ``$HF_CMAH_PSB``, else ``../shared/data/psb_v1_mini`` from the working
    directory (beside the repository when run from its root, as `make quickstart` does)."""
    if explicit is not None:
        if not explicit.exists():
            raise FileNotFoundError(f"--psb: {explicit} does not exist")
        return explicit
    if os.environ.get(PSB_ENV):
        return Path(os.environ[PSB_ENV])
    beside_checkout = PSB_FOLDER.resolve()
    return beside_checkout if beside_checkout.is_dir() else None


def psb_thumbnail(psb_root: Path) -> Query:
    """The PSB's own thumbnail of its first test model in a class named like a procedural category."""
    from ..data.builders.psb import locate

    top, benchmark = locate(psb_root)  # unpacks the archive into the cache, once
    with open(top / "labels.csv", newline="") as handle:
        rows = sorted((row for row in csv.DictReader(handle) if row["split"] == "test"), key=_model_id)
    for category in PSB_QUERY_CATEGORIES:
        for row in rows:
            if category in row["class_path"].split("/"):
                model_id = _model_id(row)
                path = benchmark / "db" / str(model_id // 100) / f"m{model_id}" / f"m{model_id}_thumb.jpg"
                description = f"the PSB's thumbnail of m{model_id} ({row['class_path']}), Princeton Shape Benchmark"
                return Query("PSB thumbnail", path, category, description)
    raise ValueError(f"{top / 'labels.csv'}: no test model in a class named {' or '.join(PSB_QUERY_CATEGORIES)}")


def _model_id(row: dict) -> int:
    return int(row["model_id"])


def load_query_image(query: Query) -> Image.Image:
    with Image.open(query.path) as image:
        return image.convert("RGB")


__all__ = ["Query", "find_psb", "held_out_render", "load_query_image", "psb_thumbnail", "relit_render"]
