"""The add-on's main-thread side: the worker, the thumbnail previews, and the poller that applies job results.

``poll`` runs as a ``bpy.app.timers`` callback (main thread), so it is the one place where job results
touch Blender data. Background Blender (and the bpy module) never fires timers: tests call ``poll`` directly.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import bpy.utils.previews

from . import preferences, props, scene_io
from .client import SearchResult, ServiceClient, ServiceError, ServiceInfo, is_loopback
from .jobs import Connection
from .local_service import LocalService
from .worker import Message, Worker

POLL_INTERVAL_S = 0.1
# Messages applied per timer call at most: a burst of thumbnails never stalls the UI for long.
MESSAGES_PER_POLL = 32


class Session:
    """Everything that lives from register to unregister."""

    def __init__(self) -> None:
        self.worker = Worker()
        self.service = LocalService()
        self.previews = bpy.utils.previews.new()

    def close(self) -> None:
        self.worker.shutdown()
        self.service.stop()
        bpy.utils.previews.remove(self.previews)

    def connection(self, context: bpy.types.Context) -> Connection:
        """A client for the service in the preferences; refuses a non-loopback URL while online access is off."""
        prefs = preferences.get(context)
        client = ServiceClient(prefs.service_url, token=prefs.token, timeout=prefs.timeout)
        local = is_loopback(client.base_url)
        if not local and not bpy.app.online_access:
            raise ServiceError(
                f"Online access is off in Blender (Preferences > System > Network), so the add-on does not "
                f"contact {client.base_url}, which is not on this computer.",
                code="offline",
                field="service_url",
            )
        return Connection(
            client=client,
            service=self.service,
            # A local command only makes sense for a service on this computer.
            command=prefs.service_command if local else "",
            log_path=user_path("service") / "serve.log",
            start_wait_s=prefs.service_start_timeout,
        )

    def icon_id(self, thumbnail_path: str) -> int:
        preview = self.previews.get(thumbnail_path)
        return preview.icon_id if preview is not None else 0

    def has_preview(self, thumbnail_path: str) -> bool:
        return thumbnail_path in self.previews


_session: Session | None = None


def current() -> Session:
    if _session is None:
        raise RuntimeError("The Shape Search add-on is not registered.")
    return _session


def start() -> None:
    global _session
    _session = Session()


def stop() -> None:
    global _session
    if bpy.app.timers.is_registered(poll):
        bpy.app.timers.unregister(poll)
    if _session is not None:
        _session.close()
        _session = None


def user_path(name: str) -> Path:
    """A folder of the extension's user directory: caches survive updates and never live inside the add-on."""
    return Path(bpy.utils.extension_path_user(__package__, path=name, create=True))


def submit(kind: str, fn, *args, **kwargs) -> int:
    """Starts a job and the poller; a new search replaces the one in flight."""
    session = current()
    if kind == "search":
        session.worker.cancel("search")
    job_id = session.worker.submit(kind, fn, *args, **kwargs)
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_INTERVAL_S, persistent=True)  # survives loading a file
    return job_id


def cancel(context: bpy.types.Context) -> int:
    cancelled = current().worker.cancel()
    set_status(props.get(context), "Cancelled", "INFO")
    return len(cancelled)


def busy(kind: str | None = None) -> bool:
    """Whether jobs (of one kind, or any) are in flight."""
    return _session is not None and bool(_session.worker.active(kind))


def poll() -> float | None:
    """Applies queued job results (main thread); keeps the timer alive while jobs run."""
    if _session is None:
        return None
    for message in _session.worker.drain(MESSAGES_PER_POLL):
        apply(bpy.context, message)
    if _session.worker.active() or not _session.worker.messages.empty():
        return POLL_INTERVAL_S
    return None


def apply(context: bpy.types.Context, message: Message) -> None:
    session = current()
    if message.kind == "done":
        session.worker.finish(message.job_id)
        return
    if not session.worker.is_active(message.job_id):
        return  # cancelled or replaced: its results are not wanted any more
    state = props.get(context)
    handler = HANDLERS[message.kind]
    handler(context, state, message.payload)
    _redraw(context)


def set_status(state: props.SHAPESEARCH_PG_state, text: str, level: str) -> None:
    state.status = text
    state.status_level = level


def report(level: str, message: str) -> None:
    """Reports through an operator, so asynchronous results reach the status bar and Info log like any other."""
    try:
        bpy.ops.shape_search.report(level=level, message=message)
    except RuntimeError:
        # Called from Python, Blender re-raises an ERROR report after logging it: the report is made.
        if level != "ERROR":
            raise


def _on_status(context, state, text: str) -> None:
    set_status(state, text, "BUSY")


def _on_info(context, state, info: ServiceInfo) -> None:
    state.models.clear()
    for model in info.models:
        entry = state.models.add()
        entry.name = model.name
        entry.code_bits = model.code_bits or 0
        entry.shapes = model.shapes
        entry.rerank = model.rerank
    state.service_version, state.writes = info.version or "?", info.writes
    if state.model not in state.models:
        state.model = info.default_model
    if not busy("search"):
        shapes = sum(model.shapes for model in info.models)
        set_status(state, f"Connected to hf-cmah {info.version}: {len(info.models)} model(s), {shapes} shapes", "INFO")


def _on_results(context, state, result: SearchResult) -> None:
    state.results.clear()
    for hit in result.hits:
        entry = state.results.add()
        entry.name = hit.shape_id
        entry.rank = hit.rank
        entry.label = hit.label
        entry.distance = -1 if hit.distance is None else int(hit.distance)
        entry.has_score = hit.score is not None
        entry.score = float(hit.score or 0.0)
        entry.mesh_url = hit.mesh_url or ""
        entry.thumbnail_url = hit.thumbnail_url or ""
    bits = f", {result.code_bits} bits" if result.code_bits else ""
    state.summary = f"{result.query_kind} → shape · {result.model}{bits} · {result.latency_ms:.1f} ms"
    set_status(state, f"{len(result.hits)} results", "INFO")


def _on_thumbnail(context, state, payload: tuple[str, Path]) -> None:
    shape_id, path = payload
    key = str(path)
    if key not in current().previews:
        current().previews.load(key, key, "IMAGE")
    for entry in state.results:
        if entry.name == shape_id:
            entry.thumbnail_path = key


def _on_thumbnail_failed(context, state, payload: tuple[str, str]) -> None:
    shape_id, error = payload
    for entry in state.results:
        if entry.name == shape_id:
            entry.thumbnail_error = error
    report("WARNING", f"No thumbnail for {shape_id}: {error}")


def _on_mesh(context, state, payload: tuple[str, Path]) -> None:
    shape_id, path = payload
    prefs = preferences.get(context)
    try:
        obj = scene_io.import_glb(context, path, shape_id, scale=prefs.import_scale, fit_size=prefs.import_fit_size)
    except scene_io.SceneIOError as error:
        _on_error(context, state, str(error))
        return
    if bpy.ops.ed.undo_push.poll():  # one undo step per import (no undo stack in background Blender)
        bpy.ops.ed.undo_push(message=f"Import {shape_id}")
    set_status(state, f"Imported {obj.name}", "INFO")
    report("INFO", f"Imported {shape_id} as {obj.name!r} in {scene_io.COLLECTION_NAME!r}")


def _on_added(context, state, answer: dict) -> None:
    added = ", ".join(answer.get("added", []))
    set_status(state, f"Added {added}: the library holds {answer.get('count', '?')} shapes", "INFO")
    report("INFO", state.status)


def _on_error(context, state, text: str) -> None:
    set_status(state, text, "ERROR")
    report("ERROR", text)


HANDLERS = {
    "status": _on_status,
    "info": _on_info,
    "results": _on_results,
    "thumbnail": _on_thumbnail,
    "thumbnail_failed": _on_thumbnail_failed,
    "mesh": _on_mesh,
    "added": _on_added,
    "error": _on_error,
}


def _redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
