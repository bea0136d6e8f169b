"""Where hf-cmah keeps unpacked archives, per-mesh samples and renders, and built datasets.

The root is ``$HF_CMAH_CACHE`` or ``~/.cache/hf-cmah``. Work is keyed by the mesh file's
content hash plus a digest of the settings that shaped it, so a second ``hf-cmah data
build`` reuses every finished sample and render, and a changed setting never serves stale
results.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from ..errors import InvalidInputError


def cache_root() -> Path:
    """The cache folder (created on first use)."""
    root = Path(os.environ.get("HF_CMAH_CACHE") or Path.home() / ".cache" / "hf-cmah").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, truncated to 20 characters (collisions are not a concern here)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]


def settings_digest(settings: object) -> str:
    """Short stable digest of JSON-serialisable settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def unpack_archive(archive: str | Path, destination: str | Path | None = None) -> Path:
    """Unpack a ``.tar.*`` archive once into ``<cache>/data`` and return the unpacked folder.

    A stamp file named after the archive's hash marks a finished unpack, so an interrupted
    one is redone and a new archive version is unpacked beside nothing stale.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise InvalidInputError(f"{archive}: no such archive")
    destination = Path(destination) if destination else cache_root() / "data"
    destination.mkdir(parents=True, exist_ok=True)
    stamp = destination / f".unpacked-{archive.name}-{file_digest(archive)}"
    if not stamp.exists():
        try:
            with tarfile.open(archive) as tar:
                tops = sorted({Path(name).parts[0] for name in tar.getnames() if name not in ("", ".")})
                tar.extractall(destination, filter="data")
        except tarfile.TarError as error:
            raise InvalidInputError(f"{archive}: not a readable tar archive ({error})") from error
        # The stamp remembers the top folder, so later calls need not decompress the archive again.
        stamp.write_text(tops[0] if len(tops) == 1 else "")
    top = stamp.read_text().strip()
    return destination / top if top else destination


__all__ = ["cache_root", "file_digest", "settings_digest", "unpack_archive"]
