"""``shapenetrender``: the CrossPoint layout of rendered images and point clouds.

::

    root/ShapeNet/<synset>/<model>.ply                                 point cloud (or .npy)
    root/ShapeNetRendering/<synset>/<model>/rendering/00.png …         R2N2 renderings
    root/ShapeNetRendering/<synset>/<model>/rendering/rendering_metadata.txt

Each rendering becomes a row with its camera from ``rendering_metadata.txt`` (one line per
image: azimuth, elevation, in-plane rotation, distance ratio, field of view). CrossPoint
pre-trains on all of it, so everything lands in the ``train`` split. Unpublishable
(ShapeNet terms).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidInputError
from ..features import empty_view
from ..records import Failure, ImageRecord, ShapeRecord, ShapeSource
from .shapenet55 import CITATION, LICENCE

POINT_SUFFIXES = (".ply", ".npy")


def collect(root: str | Path) -> ShapeSource:
    """A record per point cloud that has at least one rendering; the others are reported."""
    root = Path(root)
    points_root, images_root = root / "ShapeNet", root / "ShapeNetRendering"
    if not points_root.is_dir() or not images_root.is_dir():
        raise InvalidInputError(f"{root}: not a CrossPoint tree (expected ShapeNet/ and ShapeNetRendering/)")
    records, failures = [], []
    for points in sorted(path for path in points_root.glob("*/*") if path.suffix.lower() in POINT_SUFFIXES):
        synset, model = points.parent.name, points.stem
        rendering = images_root / synset / model / "rendering"
        images = _images(rendering)
        shape_id = f"{synset}-{model}"
        if not images:
            failures.append(Failure(shape_id, points.relative_to(root).as_posix(), f"no renderings in {rendering}"))
            continue
        records.append(
            ShapeRecord(
                shape_id=shape_id,
                split="train",
                label=synset,
                points_path=points,
                images=images,
                display_path=points.relative_to(root).as_posix(),
            )
        )
    return ShapeSource(
        name="shapenetrender",
        records=records,
        class_names=sorted({record.label for record in records}),
        licence=LICENCE,
        description="ShapeNet point clouds with their R2N2 renderings (the CrossPoint ShapeNetRender layout).",
        citation=CITATION,
        homepage="https://github.com/MohamedAfham/CrossPoint",
        publishable=False,
        failures=failures,
    )


def _images(rendering: Path) -> tuple[ImageRecord, ...]:
    pngs = sorted(rendering.glob("*.png")) if rendering.is_dir() else []
    metadata = rendering / "rendering_metadata.txt"
    cameras = [line.split() for line in metadata.read_text().splitlines() if line.strip()] if metadata.is_file() else []
    records = []
    for png in pngs:
        view = {"index": int(png.stem)} if png.stem.isdigit() else {}
        if view and view["index"] < len(cameras) and len(cameras[view["index"]]) >= 5:
            azimuth, elevation, _, distance, fov = (float(value) for value in cameras[view["index"]][:5])
            view.update(azimuth=azimuth, elevation=elevation, distance=distance, fov_deg=fov)
        records.append(ImageRecord(png, "render", {**empty_view("render"), **view}))
    return tuple(records)


__all__ = ["collect"]
