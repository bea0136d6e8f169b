"""``hf-cmah data push``: upload a built dataset folder (Parquet shards + card) to the Hub.

Only sources whose terms allow redistribution may be pushed: the Princeton Shape Benchmark,
ModelNet and ShapeNet forbid it, so their builds are refused outright, with no override.
Folders built by ``meshfolder`` carry the licence of whoever made the meshes, so they are
pushed with a warning asking the user to make sure.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import InvalidInputError
from .storage import read_build_info


def check_publishable(folder: str | Path) -> dict:
    """Raise unless the folder's source may be redistributed; return its build info."""
    info = read_build_info(folder)
    if not info["publishable"]:
        raise InvalidInputError(
            f"{folder}: refusing to push a {info['source']} dataset; its terms forbid redistribution "
            f"({info['licence']}). Keep it local."
        )
    if info["licence"].startswith("unknown"):
        warnings.warn(
            f"{folder}: the licence of these meshes is unknown; push only meshes you may redistribute",
            stacklevel=2,
        )
    return info


def push_dataset(
    folder: str | Path, repo_id: str, private: bool = False, token: str | None = None, api: object = None
) -> str:
    """Create the dataset repo if needed and upload the card, ``build_info.json`` and shards; return the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    check_publishable(folder)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", "build_info.json", "data/*.parquet"],
        commit_message="Upload dataset built with hf-cmah data build",
    )
    return str(getattr(commit, "commit_url", commit))


__all__ = ["check_publishable", "push_dataset"]
