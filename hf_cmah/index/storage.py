"""The ShapeIndex folder on disk (ARCHITECTURE.md, contract 5): manifest, checksums, atomic save.

    DIR/manifest.json        format version, model fingerprint, code bits, embedding dim, count, sha256 of every file
    DIR/codes.u8             packed codes, uint8, row-major [count, code_bits / 8]
    DIR/embeds.f16.npy       optional float16 embeddings [count, dim], for re-ranking
    DIR/metadata.parquet     shape_id (sorted, unique), label, source, thumbnail, mesh, asset_note
    DIR/assets/              optional thumbnails (PNG) and meshes (GLB), named by their sha256 (see assets.py)

A folder is written complete into a hidden sibling and then renamed into place, so a
crash while writing leaves the previous index untouched and loadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError, IncompatibleIndexError
from .assets import copy_assets, is_asset_name

FORMAT_NAME = "hf-cmah-shape-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CODES_FILE = "codes.u8"
EMBEDS_FILE = "embeds.f16.npy"
METADATA_FILE = "metadata.parquet"
METADATA_COLUMNS = ("shape_id", "label", "source", "thumbnail", "mesh", "asset_note")
# Columns that came after format version 1's first folders: reading a folder without them adds them, empty.
LATER_COLUMNS = ("mesh", "asset_note")
VOLATILE_CONFIG_KEYS = ("architectures", "auto_map", "transformers_version", "torch_dtype", "dtype")
# Settings that change how queries are coded, not the index's shape codes: a calibrated model
# (`hf-cmah model calibrate`) still searches the index its uncalibrated self built.
QUERY_ONLY_CONFIG_KEYS = ("image_code_thresholds",)


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the model that made an index's codes: hub id, revision, a hash of its config and of its weights.

    The config hash tells two architectures apart; the weights hash tells two trainings of one
    architecture apart (a fine-tuned checkpoint makes different codes). It is ``DTYPE:SHA256``
    of the weights as loaded, so a model loaded in another dtype cannot be compared: that is
    skipped with a warning rather than refused.
    """

    model_id: str | None = None
    revision: str | None = None
    config_hash: str | None = None
    weights_hash: str | None = None

    @classmethod
    def of(cls, model) -> ModelFingerprint:
        """Fingerprint a retriever: its config's hub id and commit, the sha256 of its config JSON and of its weights."""
        config = model.config
        # Hash the hyper-parameters only: saving adds `architectures` / `auto_map`, loading sets
        # private fields and dtype, none of which changes the codes.
        settings = {
            key: value
            for key, value in config.to_dict().items()
            if not key.startswith("_") and key not in VOLATILE_CONFIG_KEYS + QUERY_ONLY_CONFIG_KEYS
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        model_id = getattr(config, "_name_or_path", None) or None
        return cls(model_id, getattr(config, "_commit_hash", None), digest, weights_hash(model))

    def check_matches(self, other: ModelFingerprint, where: str, model=None) -> None:
        """Raise IncompatibleIndexError naming the field that differs (fields unknown on either side are skipped).

        ``model``, the one ``other`` fingerprints, lets an index built before CMAHModel was split from its
        pre-training head match the file it was built from (`checkpoint_weights_hash`).
        """
        if self.config_hash and other.config_hash and self.config_hash != other.config_hash:
            raise IncompatibleIndexError(
                f"{where}: the index was built by a model with config hash {self.config_hash[:12]}… "
                f"({self.model_id or 'unnamed'}), this model has {other.config_hash[:12]}… ({other.model_id or 'unnamed'})"
            )
        if not (self.weights_hash and other.weights_hash) or self.weights_hash == other.weights_hash:
            return
        built_dtype, built_digest = self.weights_hash.split(":", 1)
        model_dtype, model_digest = other.weights_hash.split(":", 1)
        if built_dtype != model_dtype:
            warnings.warn(
                f"{where}: the index was built by {built_dtype} weights, this model holds {model_dtype}: "
                "its weights cannot be checked against the index's",
                stacklevel=3,
            )
            return
        if model is not None and checkpoint_weights_hash(model) == self.weights_hash:
            return
        raise IncompatibleIndexError(
            f"{where}: same config, but the index was built by weights with hash {built_digest[:12]}… "
            f"({self.model_id or 'unnamed'}) and this model's weights hash to {model_digest[:12]}… "
            f"({other.model_id or 'unnamed'}): another checkpoint of the same architecture makes other codes"
        )


def weights_hash(model) -> str | None:
    """``DTYPE:SHA256`` over every tensor of ``model.state_dict()`` (names, shapes, bytes); None without one.

    ~0.2 s per 100 MB of weights; computed when an index is built or a model attached.
    """
    if not hasattr(model, "state_dict"):
        return None
    return _state_hash(model.state_dict())


def checkpoint_weights_hash(model) -> str | None:
    """`weights_hash` over every tensor of the safetensors file ``model`` was loaded from, when that file holds
    more than the model; None otherwise (no such file on disk or in the Hub cache, or nothing more in it).

    A folder saved by CMAH training holds the pre-training head beside the encoders. Before CMAHModel was
    split from CMAHForPreTraining, the model loaded from it held the head too, so the indexes built then
    hashed it: this is that hash, and it lets those indexes take the model loaded from the same folder.
    """
    path = _checkpoint_file(model)
    if path is None or not hasattr(model, "state_dict"):
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as handle:
        if len(list(handle.keys())) <= len(model.state_dict()):
            return None
    return _state_hash(load_file(str(path)))


def _checkpoint_file(model) -> Path | None:
    """The single ``model.safetensors`` of the folder or Hub id (at the loaded commit) in ``model.config``."""
    name = str(getattr(model.config, "_name_or_path", "") or "")
    if not name:
        return None
    if Path(name).is_dir():
        path = Path(name) / "model.safetensors"
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, "model.safetensors", revision=getattr(model.config, "_commit_hash", None))
    except HFValidationError:  # neither a folder nor a Hub id: nothing to read
        return None
    return Path(cached) if isinstance(cached, str) else None


def _state_hash(state: dict) -> str:
    """``DTYPE:SHA256`` over the tensors of a state dict, by sorted name."""
    import torch  # here, so that reading an index folder does not import torch

    digest = hashlib.sha256()
    float_dtypes = set()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous().reshape(-1)
        if tensor.is_floating_point():
            float_dtypes.add(str(tensor.dtype).removeprefix("torch."))
        digest.update(f"{name}:{tensor.dtype}:{tuple(state[name].shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return f"{'+'.join(sorted(float_dtypes)) or 'none'}:{digest.hexdigest()}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_folder(
    path: Path,
    codes: np.ndarray,
    metadata,
    embeddings: np.ndarray | None,
    manifest: dict,
    asset_root: Path | None = None,
) -> None:
    """Write a complete index folder at ``path`` atomically (temp sibling, then rename).

    The assets the metadata names are linked in from ``asset_root`` (the folder they are in now);
    the manifest's checksums cover the other files, an asset's name is its own checksum.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        np.ascontiguousarray(codes, dtype=np.uint8).tofile(temp / CODES_FILE)
        pq.write_table(metadata, temp / METADATA_FILE)
        if embeddings is not None:
            np.save(temp / EMBEDS_FILE, embeddings.astype(np.float16))
        files = sorted(item.name for item in temp.iterdir())
        columns = [column for column in ("thumbnail", "mesh") if column in metadata.column_names]
        names = [value for column in columns for value in metadata.column(column).to_pylist()]
        names = [name for name in names if is_asset_name(name)]
        if names and asset_root is None:
            raise CorruptIndexError(
                f"{path}: the metadata names assets ({names[0]}, …) but the index has no asset folder"
            )
        copy_assets(names, asset_root, temp)
        manifest = {**manifest, "files": {name: sha256_file(temp / name) for name in files}}
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for item in temp.rglob("*"):
            if item.is_file():
                _fsync(item)
        _swap_into_place(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _fsync(file: Path) -> None:
    with open(file, "rb") as handle:
        os.fsync(handle.fileno())


def _swap_into_place(temp: Path, path: Path) -> None:
    """Rename ``temp`` to ``path``; an existing index is moved aside first and deleted only afterwards."""
    if not path.exists():
        os.rename(temp, path)
        return
    if not (path / MANIFEST).is_file():
        raise FileExistsError(f"{path}: exists and is not a ShapeIndex folder (no {MANIFEST}); not overwriting it")
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(path, old)
    os.rename(temp, path)
    shutil.rmtree(old)


def recover_interrupted_save(path: Path) -> None:
    """A save killed between its two renames leaves nothing at ``path`` and the previous index beside it
    (``.<name>.old-*``, complete): put that back, so the folder loads as it was before the save."""
    if path.exists():
        return
    previous = [old for old in path.parent.glob(f".{path.name}.old-*") if (old / MANIFEST).is_file()]
    if previous:
        os.rename(max(previous, key=lambda old: old.stat().st_mtime), path)


def read_manifest(path: Path) -> dict:
    """Read and verify ``manifest.json`` and the sha256 of every file it lists."""
    path = Path(path)
    recover_interrupted_save(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{path}: not a ShapeIndex folder (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as error:
        raise CorruptIndexError(f"{manifest_file}: not valid JSON ({error})") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptIndexError(
            f"{manifest_file}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}, "
            f"this hf_cmah reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    for name, expected in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise CorruptIndexError(f"{file}: listed in the manifest but missing")
        if sha256_file(file) != expected:
            raise CorruptIndexError(f"{file}: sha256 does not match the manifest (the file is corrupt or was edited)")
    return manifest


def read_folder(path: Path) -> tuple[dict, np.ndarray, object, np.ndarray | None]:
    """Verified ``(manifest, codes uint8 [N, B], metadata pyarrow.Table, embeddings float16 or None)``."""
    import pyarrow.parquet as pq

    path = Path(path)
    manifest = read_manifest(path)
    count, code_bytes = int(manifest["count"]), int(manifest["code_bits"]) // 8
    codes = np.fromfile(path / CODES_FILE, dtype=np.uint8)
    if codes.size != count * code_bytes:
        raise CorruptIndexError(f"{path / CODES_FILE}: {codes.size} bytes, the manifest says {count} × {code_bytes}")
    metadata = pq.read_table(path / METADATA_FILE).combine_chunks()  # one chunk: a search's id lookup is one take
    for column in LATER_COLUMNS:
        if column not in metadata.column_names:
            import pyarrow as pa

            metadata = metadata.append_column(column, pa.nulls(metadata.num_rows, pa.string()))
    if metadata.num_rows != count:
        raise CorruptIndexError(f"{path / METADATA_FILE}: {metadata.num_rows} rows, the manifest says {count}")
    # Only a listed (so verified) file counts: a stray one, e.g. left in a Hub repo by an earlier push, is not read.
    embeddings = np.load(path / EMBEDS_FILE) if EMBEDS_FILE in manifest.get("files", {}) else None
    if embeddings is not None and embeddings.shape[0] != count:
        raise CorruptIndexError(f"{path / EMBEDS_FILE}: {embeddings.shape[0]} rows, the manifest says {count}")
    return manifest, codes.reshape(count, code_bytes), metadata, embeddings


__all__ = [
    "CODES_FILE",
    "EMBEDS_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "ModelFingerprint",
    "read_folder",
    "read_manifest",
    "write_folder",
]
