"""``pix3d``: Pix3D furniture models paired with real photos (or, failing those, their masks).

Two annotation layouts are read:

- the official ``pix3d.json`` (a list of ``{"img", "mask", "model", "category", …}``),
  all of it in the ``train`` split (Pix3D has no official split);
- a Mesh R-CNN COCO-style split file such as ``pix3d_s1_test.json`` or the mini subset's
  ``pix3d_s1_test_subset.json`` (``images``, ``annotations`` with ``model``,
  ``segmentation`` = mask path, ``K``), in the split its name says (``train`` or ``test``).

Each annotation adds one image row to its model's shape: the photo when it is on disk,
else the mask (a real-photo silhouette, kind ``mask``). The field of view comes from the
annotation (``K`` or ``focal_length``); Pix3D's pose conventions are not converted, so
``cam_to_world`` stays NaN. Pix3D is CC BY 4.0, so its datasets may be published.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...errors import InvalidInputError
from ..cache import unpack_archive
from ..features import empty_view
from ..records import Failure, ImageRecord, ShapeRecord, ShapeSource

LICENCE = "cc-by-4.0"
CITATION = (
    "Xingyuan Sun et al. Pix3D: Dataset and Methods for Single-Image 3D Shape Modeling. CVPR 2018. "
    "(S1/S2 splits: Georgia Gkioxari et al. Mesh R-CNN. ICCV 2019.)"
)
# Pix3D's focal_length is in millimetres on a 32 mm wide sensor.
SENSOR_WIDTH_MM = 32.0


def collect(root: str | Path) -> ShapeSource:
    """Shapes from the annotation file(s) under ``root`` (a folder, or a ``.tar.*`` / folder holding one)."""
    root = _locate(Path(root))
    annotations = _annotations(root)
    images: dict[str, list[ImageRecord]] = {}
    splits: dict[str, str] = {}
    labels: dict[str, str] = {}
    failures: list[Failure] = []
    for split, entry in annotations:
        model = entry["model"]
        image = _image(root, entry)
        if image is None:
            failures.append(Failure(model, entry.get("img") or entry.get("mask", ""), "neither photo nor mask on disk"))
            continue
        images.setdefault(model, []).append(image)
        splits.setdefault(model, split)
        labels[model] = entry["category"]
    records = []
    for model, model_images in sorted(images.items()):
        mesh = root / model
        shape_id = str(Path(model).parent.relative_to("model").as_posix()) if model.startswith("model/") else model
        if not mesh.is_file():
            failures.append(Failure(shape_id, model, "the model file is missing"))
            continue
        records.append(
            ShapeRecord(
                shape_id=shape_id,
                split=splits[model],
                label=labels[model],
                mesh_path=mesh,
                images=tuple(model_images),
                display_path=model,
            )
        )
    return ShapeSource(
        name="pix3d",
        records=records,
        class_names=sorted(set(labels.values())),
        licence=LICENCE,
        description="Pix3D furniture models paired with real photos or their silhouette masks.",
        citation=CITATION,
        homepage="http://pix3d.csail.mit.edu/",
        publishable=True,
        failures=failures,
    )


def _locate(root: Path) -> Path:
    if root.is_file():
        return unpack_archive(root)
    if root.is_dir() and not list(root.glob("*.json")) and list(root.glob("*.tar*")):
        return unpack_archive(sorted(root.glob("*.tar*"))[0])
    if not root.is_dir():
        raise InvalidInputError(f"{root}: no such Pix3D folder")
    return root


def _annotations(root: Path) -> list[tuple[str, dict]]:
    """``(split, {"model", "category", "img", "mask", "fov_deg"})`` for every annotation found."""
    official = root / "pix3d.json"
    if official.is_file():
        entries = _read_json(official)
        if not isinstance(entries, list):
            raise InvalidInputError(f"{official}: expected a list of annotations")
        return [("train", _official_entry(official, entry)) for entry in entries]
    split_files = sorted(root.glob("pix3d_s*_*.json"))
    if not split_files:
        raise InvalidInputError(f"{root}: no pix3d.json nor a pix3d_s1/s2 split file (e.g. pix3d_s1_test.json)")
    return [entry for path in split_files for entry in _coco_entries(path)]


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{path}: not valid JSON ({error})") from error


def _official_entry(path: Path, entry: dict) -> dict:
    try:
        fov = 2 * math.degrees(math.atan(SENSOR_WIDTH_MM / 2 / float(entry["focal_length"])))
        return {
            "model": entry["model"],
            "category": entry["category"],
            "img": entry["img"],
            "mask": entry["mask"],
            "fov_deg": fov,
        }
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"{path}: annotation {entry.get('img', '?')} lacks {error}") from error


def _coco_entries(path: Path) -> list[tuple[str, dict]]:
    data = _read_json(path)
    try:
        categories = {category["id"]: category["name"] for category in data["categories"]}
        images = {image["id"]: image for image in data["images"]}
        split = "train" if "train" in path.stem else "test"
        entries = []
        for annotation in data["annotations"]:
            image = images[annotation["image_id"]]
            focal = float(annotation["K"][0])
            entries.append(
                (
                    split,
                    {
                        "model": annotation["model"],
                        "category": categories[annotation["category_id"]],
                        "img": image["file_name"],
                        "mask": annotation["segmentation"],
                        "fov_deg": 2 * math.degrees(math.atan(float(image["width"]) / 2 / focal)),
                    },
                )
            )
        return entries
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise InvalidInputError(
            f"{path}: not a COCO-style Pix3D split file ({type(error).__name__}: {error})"
        ) from error


def _image(root: Path, entry: dict) -> ImageRecord | None:
    for kind, key in (("photo", "img"), ("mask", "mask")):
        path = root / entry[key] if entry.get(key) else None
        if path is not None and path.is_file():
            return ImageRecord(path, kind, {**empty_view(kind), "fov_deg": entry["fov_deg"]})
    return None


__all__ = ["collect"]
