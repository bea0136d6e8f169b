"""What a server serves and how: the libraries (a model and the index it made) and the limits.

One :class:`ServiceSettings` comes from the `hf-cmah serve` flags, a small YAML file listing
libraries, or the environment (``HF_CMAH_MODEL`` / ``HF_CMAH_INDEX``, as a Space sets them)::

    libraries:
      - {name: cmah-64, model: user/cmah-64, index: user/cmah-64-library}
      - {name: cmah-128, model: runs/cmah-128/final, index: indexes/cmah-128}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..images import MAX_IMAGE_PIXELS

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_ENV = "HF_CMAH_TOKEN"


@dataclass(frozen=True)
class LibrarySpec:
    """One searchable library: a retriever (folder or Hub id) and the ShapeIndex it made (folder or Hub id)."""

    name: str
    model: str
    index: str

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ConfigError(f"library name {self.name!r}: use letters, digits, '.', '_' or '-' (at most 64)")


@dataclass(frozen=True)
class ServiceSettings:
    """Libraries (the first is the default), write access and the limits every request is held to."""

    libraries: tuple[LibrarySpec, ...] = ()
    allow_writes: bool = False
    token: str | None = None
    max_upload_mb: float = 20.0
    max_image_pixels: int = MAX_IMAGE_PIXELS
    workers: int = 2
    queue_size: int = 32
    torch_threads: int | None = None
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.libraries]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"libraries: the name {repeated[0]!r} is used twice; give each library its own --name")
        if self.allow_writes and not self.token:
            raise ConfigError(f"--allow-writes needs a token: set {TOKEN_ENV} or pass --token-file")
        if self.max_upload_mb <= 0 or self.workers < 1 or self.queue_size < 0:
            raise ConfigError("--max-upload-mb must be > 0, --workers ≥ 1 and --queue-size ≥ 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def library_specs(models: list[str], indexes: list[str], names: list[str] | None = None) -> tuple[LibrarySpec, ...]:
    """Pair repeated ``--model`` / ``--index`` flags by position; a library is named ``--name`` or after its index."""
    if len(models) != len(indexes):
        raise ConfigError(f"--model and --index pair up: got {len(models)} models and {len(indexes)} indexes")
    names = names or []
    if len(names) not in (0, len(models)):
        raise ConfigError(f"--name: give one per library ({len(models)}) or none, got {len(names)}")
    return tuple(
        LibrarySpec(names[number] if names else _default_name(index), model, index)
        for number, (model, index) in enumerate(zip(models, indexes))
    )


def _default_name(index: str) -> str:
    """The index folder's or Hub repo's last part, made into a valid name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(index.rstrip("/")).name).strip("-._") or "library"
    return name[:64]


def libraries_from_yaml(path: str | Path) -> tuple[LibrarySpec, ...]:
    """``libraries: [{name, model, index}, ...]`` from a YAML file; each entry's problem is named."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the libraries file ({error})") from None
    entries = document.get("libraries") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected `libraries:` with a list of {{name, model, index}} entries")
    specs = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"model", "index"} <= set(entry):
            raise ConfigError(f"{path}: libraries[{number}] needs `model` and `index` (and optionally `name`)")
        specs.append(
            LibrarySpec(str(entry.get("name") or _default_name(entry["index"])), entry["model"], entry["index"])
        )
    return tuple(specs)


def libraries_from_env() -> tuple[LibrarySpec, ...]:
    """``HF_CMAH_MODEL`` + ``HF_CMAH_INDEX`` (folders or Hub ids) as one library; none when unset."""
    model, index = os.environ.get("HF_CMAH_MODEL"), os.environ.get("HF_CMAH_INDEX")
    if bool(model) != bool(index):
        raise ConfigError("HF_CMAH_MODEL and HF_CMAH_INDEX go together: set both or neither")
    return library_specs([model], [index]) if model else ()


def read_token(token_file: str | Path | None) -> str | None:
    """The write token: from ``--token-file`` (first line) when given, else ``$HF_CMAH_TOKEN``."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        token = Path(token_file).read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError):
        raise ConfigError(f"--token-file: {token_file}: cannot read a token from it") from None
    if len(token) < 16:
        raise ConfigError(f"--token-file: {token_file}: the token must be at least 16 characters")
    return token


__all__ = [
    "TOKEN_ENV",
    "LibrarySpec",
    "ServiceSettings",
    "libraries_from_env",
    "libraries_from_yaml",
    "library_specs",
    "read_token",
]
