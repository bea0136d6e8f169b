"""Shape libraries on the Hub: a ShapeIndex folder as a dataset repo, fetched into the Hub cache.

A repo holds the index folder as saved (manifest, codes, metadata, embeddings, assets); the
manifest's checksums travel with it, so a downloaded snapshot is verified exactly as a local
folder is. Downloads go through ``huggingface_hub.snapshot_download``, so ``HF_HOME``,
``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` apply as they do to models.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError
from .storage import MANIFEST


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


__all__ = ["index_snapshot"]
