"""Per-shape files an index folder serves: thumbnails (PNG) and meshes (GLB), content-addressed under ``assets/``.

A file is named by the sha256 of its bytes (``assets/<64 hex>.png`` or ``.glb``), so a name is
checked by hashing the file, identical files are stored once, and a name read from the
metadata can never point outside the folder: anything not of that exact form is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError, InvalidInputError, MeshLoadError

ASSETS_DIR = "assets"
ASSET_NAME = re.compile(r"assets/[0-9a-f]{64}\.(png|glb)")


def is_asset_name(value: object) -> bool:
    """Whether a metadata value names a stored asset (rather than a free-form path given by a user)."""
    return isinstance(value, str) and ASSET_NAME.fullmatch(value) is not None


def store_asset(root: Path, data: bytes, suffix: str) -> str:
    """Write ``data`` as ``root/assets/<sha256><suffix>`` (atomically; kept if already there); return its name."""
    name = f"{ASSETS_DIR}/{hashlib.sha256(data).hexdigest()}{suffix}"
    target = Path(root) / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        temp.write_bytes(data)
        os.replace(temp, target)
    return name


def asset_file(root: Path, name: str) -> Path:
    """The file behind asset ``name`` in the index folder ``root``, its bytes checked against the name."""
    if not is_asset_name(name):
        raise InvalidInputError(f"asset: {name!r} is not an asset name (assets/<sha256>.png|glb)")
    path = Path(root) / name
    if not path.is_file():
        raise CorruptIndexError(f"{path}: listed in the metadata but missing")
    if hashlib.sha256(path.read_bytes()).hexdigest() != path.stem:
        raise CorruptIndexError(f"{path}: its bytes do not match its name (the file is corrupt or was edited)")
    return path


def copy_assets(names: Iterable[str], source_root: Path, target_root: Path) -> None:
    """Hard-link (or, across file systems, copy) the named assets from one folder into another."""
    for name in sorted(set(names)):
        source = Path(source_root) / name
        if not source.is_file():
            raise CorruptIndexError(f"{source}: an asset the index refers to is missing; not saving without it")
        target = Path(target_root) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def shape_glb(mesh_file: str | Path | None, cloud: np.ndarray) -> tuple[bytes, str | None]:
    """A GLB of the mesh in ``mesh_file`` when it holds faces, else of the point cloud (what a 3D viewer shows),
    and why a file given holds no mesh (the reason, when the GLB is of the cloud instead)."""
    import trimesh

    from ..geometry import load_mesh

    if mesh_file is not None:
        try:
            return load_mesh(mesh_file).export(file_type="glb"), None
        except MeshLoadError as error:  # unreadable, or no faces (a point cloud PLY): the cloud is what there is
            reason = str(error)
    else:
        reason = None
    return trimesh.PointCloud(np.asarray(cloud, np.float32)[:, :3]).export(file_type="glb"), reason


def image_png(image) -> bytes:
    """PNG bytes of a PIL image or an ``[H, W, C]`` uint8 array."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "ASSETS_DIR",
    "asset_file",
    "copy_assets",
    "image_png",
    "is_asset_name",
    "shape_glb",
    "store_asset",
]
