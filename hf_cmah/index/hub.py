"""Shape libraries on the Hub: a ShapeIndex folder as a dataset repo with a card, pushed and fetched.

A repo holds the index folder as saved (manifest, codes, metadata, embeddings, assets) plus a
README.md dataset card, which the manifest does not list and loading ignores; the manifest's
checksums travel with it, so a downloaded snapshot is verified exactly as a local folder is.
Downloads go through ``huggingface_hub.snapshot_download``, so ``HF_HOME``, ``HF_HUB_OFFLINE``
and ``HF_ENDPOINT`` apply as they do to models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import InvalidInputError
from .assets import is_asset_name
from .storage import FORMAT_VERSION, MANIFEST, METADATA_FILE

if TYPE_CHECKING:
    from .shape_index import ShapeIndex

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# The Hub's own file in every repo: a push never deletes it.
REPO_FILES_KEPT = {".gitattributes"}

CARD_BODY = """
# {name}

A shape library for image ⇄ 3D-shape retrieval with [hf-cmah](https://github.com/hf-cmah/hf-cmah):
{count:,} shapes as {code_bits}-bit hash codes{embeddings}, made by {made_by}.
{assets}

## Use

```python
import hf_cmah  # registers the model with the Auto classes
from transformers import AutoModel
from hf_cmah.index import ShapeIndex

model = AutoModel.from_pretrained("{model}")
index = ShapeIndex.from_pretrained("{repo_id}", model=model)  # checks the model made these codes
hits = index.search(images=[image], k=10, with_metadata=True)  # ids, Hamming distances, label, thumbnail, mesh
```

Serve it (JSON API + web UI): `hf-cmah serve --model {model} --index {repo_id}`.
Search from the command line: `hf-cmah search {repo_id} --image query.png --model {model}`.

## Files

A ShapeIndex folder (format version {format_version}): `manifest.json` (model fingerprint, code bits,
count, sha256 of every file, verified on load), `codes.u8` (packed codes, rows sorted by shape id),
`metadata.parquet` (shape_id, label, source, thumbnail, mesh){embeds_file}{assets_dir}.

## Licence

{licence}
"""


def index_snapshot(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """The local folder of dataset repo ``repo_id`` at ``revision``: downloaded, or found in the cache offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"index: {repo_id!r} is not an index folder"
    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, token=token))
    except HFValidationError:
        raise InvalidInputError(f"{where}, nor a Hub dataset id (org/name)") from None
    except RepositoryNotFoundError:  # also a gated or private repo without a token
        raise InvalidInputError(
            f"{where}, and the Hub has no dataset repo of that name that this token may read"
        ) from None
    except RevisionNotFoundError:
        raise InvalidInputError(f"revision: dataset repo {repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise InvalidInputError(
            f"{where}, and the dataset repo is not in the Hub cache while the Hub cannot be reached "
            "(HF_HUB_OFFLINE=1 or no network): download it once online, or give a local folder"
        ) from None
    if not (folder / MANIFEST).is_file():
        raise InvalidInputError(f"index: dataset repo {repo_id} has no {MANIFEST}: it is not a ShapeIndex")
    return folder


def index_card(index: ShapeIndex, repo_id: str, model_id: str | None, license: str | None) -> str:
    """The README.md of a pushed index: YAML the Hub reads (licence, tags, the model), then how to use it."""
    fingerprint = index.fingerprint
    model_id = model_id or _hub_model_id(fingerprint.model_id)
    thumbnails, meshes = (
        sum(is_asset_name(name) for name in index.metadata.column(column).to_pylist())
        for column in ("thumbnail", "mesh")
    )
    header = {
        "license": license or "other",
        "pretty_name": repo_id.split("/")[-1],
        "tags": ["hf-cmah", "shape-index", "3d", "image-to-3d-retrieval", "hashing"],
        # The viewer shows the metadata table, rather than guessing a format from assets/*.png.
        "configs": [{"config_name": "default", "data_files": METADATA_FILE}],
        "shape_index": {
            "model": model_id,
            "model_config_hash": fingerprint.config_hash,
            "code_bits": index.code_bits,
            "count": len(index),
        },
    }
    if license is None:
        licence = "Not stated: ask whoever pushed this library before you reuse its meshes or thumbnails."
    else:
        licence = f"The shapes (meshes, thumbnails) are under `{license}`, as stated by whoever pushed this library."
    assets = ""
    if thumbnails or meshes:
        assets = f"Each shape's files are served with it: {meshes:,} meshes (GLB) and {thumbnails:,} thumbnails (PNG)."
    body = CARD_BODY.format(
        name=repo_id.split("/")[-1],
        count=len(index),
        code_bits=index.code_bits,
        embeddings=", with float16 embeddings for re-ranking" if index.embeddings is not None else "",
        made_by=f"[{model_id}](https://huggingface.co/{model_id})" if model_id else "a model not named on the Hub",
        assets=assets,
        model=model_id or "MODEL",
        repo_id=repo_id,
        format_version=FORMAT_VERSION,
        embeds_file=", `embeds.f16.npy` (float16 embeddings)" if index.embeddings is not None else "",
        assets_dir=", `assets/` (files named by their sha256)" if thumbnails or meshes else "",
        licence=licence,
    )
    return f"---\n{yaml.safe_dump(header, sort_keys=False).strip()}\n---\n{body}"


def _hub_model_id(name: str | None) -> str | None:
    """The manifest's model id when it names a Hub repo: not a local folder's path, which names nothing there."""
    return name if name and HUB_ID.fullmatch(name) and not Path(name).exists() else None


def push_folder(folder: Path, repo_id: str, *, private: bool, token: str | None, commit_message: str, api) -> str:
    """Make the dataset repo hold exactly ``folder`` in one commit (so no one downloads half an index); the URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    stale = set(api.list_repo_files(repo_id, repo_type="dataset")) - set(files) - REPO_FILES_KEPT
    operations = [CommitOperationDelete(path) for path in sorted(stale)]
    operations += [CommitOperationAdd(path, str(folder / path)) for path in files]
    commit = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="dataset")
    return commit.commit_url


__all__ = ["index_card", "index_snapshot", "push_folder"]
