"""What the worker threads do: search, fetch thumbnails and meshes, add shapes. No ``bpy``.

Each job takes plain values read on the main thread (paths, numbers, a :class:`Connection`) and reports
through ``emit(kind, payload)``; ``session.poll`` applies the payloads to Blender on the main thread.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .client import SearchResult, ServiceClient, ServiceError
from .local_service import LocalService
from .worker import Emit

# Thumbnails download a few at a time: the grid fills in quickly without flooding a small server.
THUMBNAIL_DOWNLOADS = 3


@dataclass(frozen=True)
class Connection:
    """A client plus, when the preferences give a command line, how to start a local service."""

    client: ServiceClient
    service: LocalService
    command: str = ""
    log_path: Path = Path()
    start_wait_s: float = 60.0

    def ensure_running(self, emit: Emit, cancelled: threading.Event) -> None:
        if not self.command.strip():
            return
        emit("status", f"Connecting to {self.client.base_url}…")
        if self.service.ensure_running(self.client, self.command, self.log_path, self.start_wait_s, cancelled):
            emit("status", f"Started the local service at {self.client.base_url}")


def cache_path(client: ServiceClient, url: str, directory: Path, suffix: str) -> Path:
    """Where a downloaded asset lives: named by a hash of service + URL (the URL carries shape id and model)."""
    digest = hashlib.sha256(f"{client.base_url}\n{url}".encode()).hexdigest()[:32]
    return directory / f"{digest}{suffix}"


def cached_download(client: ServiceClient, url: str, directory: Path, suffix: str) -> Path:
    path = cache_path(client, url, directory, suffix)
    return path if path.is_file() else client.download(url, path)


def fetch_info(connection: Connection, *, emit: Emit, cancelled: threading.Event) -> None:
    connection.ensure_running(emit, cancelled)
    emit("info", connection.client.info())


def search(
    connection: Connection,
    query: Path,
    kind: str,
    *,
    k: int,
    model: str,
    rerank: int,
    thumbnails: Path,
    with_info: bool,
    query_is_temporary: bool,
    emit: Emit,
    cancelled: threading.Event,
) -> None:
    """Image → shape (``kind="image"``) or shape → shape search, then the results' thumbnails as they arrive."""
    client = connection.client
    try:
        connection.ensure_running(emit, cancelled)
        if with_info:
            emit("info", client.info())
        if kind == "image":
            result = client.search_image(query, k=k, model=model, rerank=rerank)
        else:
            result = client.search_shape(query, k=k, model=model, rerank=rerank)
    finally:
        if query_is_temporary:
            shutil.rmtree(query.parent, ignore_errors=True)
    if cancelled.is_set():
        return
    emit("results", result)
    fetch_thumbnails(client, result, thumbnails, emit=emit, cancelled=cancelled)


def fetch_thumbnails(
    client: ServiceClient, result: SearchResult, directory: Path, *, emit: Emit, cancelled: threading.Event
) -> None:
    """Emits ``thumbnail`` (shape id, path) per result, or ``thumbnail_failed`` (shape id, message): one bad
    thumbnail never hides the others, and each failure is shown."""
    wanted = [hit for hit in result.hits if hit.thumbnail_url]
    with ThreadPoolExecutor(THUMBNAIL_DOWNLOADS, thread_name_prefix="shape-search-thumbnail") as pool:
        futures = {pool.submit(cached_download, client, hit.thumbnail_url, directory, ".png"): hit for hit in wanted}
        for future in as_completed(futures):
            if cancelled.is_set():
                for pending in futures:
                    pending.cancel()
                return
            hit = futures[future]
            try:
                emit("thumbnail", (hit.shape_id, future.result()))
            except (ServiceError, OSError) as error:
                emit("thumbnail_failed", (hit.shape_id, str(error)))


def fetch_mesh(
    connection: Connection, shape_id: str, mesh_url: str, meshes: Path, *, emit: Emit, cancelled: threading.Event
) -> None:
    """Downloads (or finds in the cache) a result's GLB; the main thread imports it."""
    connection.ensure_running(emit, cancelled)
    path = cached_download(connection.client, mesh_url, meshes, ".glb")
    if not cancelled.is_set():
        emit("mesh", (shape_id, path))


def add_shapes(
    connection: Connection,
    files: list[Path],
    *,
    shape_ids: list[str],
    labels: list[str],
    model: str,
    emit: Emit,
    cancelled: threading.Event,
) -> None:
    """Uploads exported GLBs (in one temporary folder, removed afterwards) to the library."""
    try:
        connection.ensure_running(emit, cancelled)
        answer = connection.client.add_shapes(files, shape_ids=shape_ids, labels=labels, model=model)
    finally:
        if files:
            shutil.rmtree(files[0].parent, ignore_errors=True)
    emit("added", answer)
