"""The ASGI app: the JSON API under ``/api/v1`` with the Gradio page mounted at ``/``.

``create_app`` is the one place it is put together, for `hf-cmah serve`, the Space's
``app.py`` and the tests. Libraries load once: before the server starts (`hf-cmah serve`
loads them first, so a model that did not make its index is refused with the reason), or
else in the lifespan; with none given, the quickstart's sample library is served.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request

from .. import __version__
from .errors import NotFoundError, install_error_handlers
from .inference import InferencePool
from .libraries import LibraryRegistry
from .middleware import AccessLogMiddleware, UploadLimitMiddleware
from .routers import health, search, shapes
from .sample import start_sample_build
from .settings import ServiceSettings, libraries_from_env, read_token
from .ui import SessionFiles, build_ui


def create_app(
    settings: ServiceSettings, registry: LibraryRegistry | None = None, sample_dir: Path | None = None
) -> FastAPI:
    """The app serving ``settings.libraries`` (or an already loaded ``registry``); with neither, the sample
    library of ``sample_dir`` (default ``outputs/quickstart``), built in the background if it is missing."""
    registry = registry or LibraryRegistry()
    session_files = SessionFiles()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = InferencePool(settings.workers, settings.queue_size, settings.torch_threads)
        if not registry.ready:
            if settings.libraries:
                registry.load(settings.libraries)
            else:
                start_sample_build(registry, *([sample_dir] if sample_dir else []))
        yield
        app.state.pool.close()
        session_files.close()

    app = FastAPI(
        title="hf-cmah shape search",
        version=__version__,
        description="Image → shape and shape → shape search over hf-cmah shape libraries.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.registry = registry
    install_error_handlers(app)
    for router in (health.router, search.router, shapes.router):
        app.include_router(router)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def unknown_api_route(rest: str, request: Request):
        """Keep unknown API paths JSON (the Gradio page is mounted at `/` and would answer them with HTML)."""
        raise NotFoundError(f"path: {request.url.path} is not an API route (see /openapi.json)")

    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(AccessLogMiddleware)
    examples = [str(Path(path).resolve().parent) for path in settings.examples]
    gr.mount_gradio_app(
        app,
        build_ui(registry, settings, session_files),
        path="/",
        allowed_paths=[str(session_files.root), *examples],
        max_file_size=settings.max_upload_bytes,
        footer_links=["api"],
        show_error=True,
    )
    return app


def app_from_env() -> FastAPI:
    """The app of ``HF_CMAH_MODEL`` / ``HF_CMAH_INDEX`` (and ``HF_CMAH_TOKEN`` for writes with
    ``HF_CMAH_ALLOW_WRITES=1``): a factory for ``uvicorn --factory hf_cmah.service.app:app_from_env``."""
    allow_writes = os.environ.get("HF_CMAH_ALLOW_WRITES", "") == "1"
    return create_app(ServiceSettings(libraries_from_env(), allow_writes=allow_writes, token=read_token(None)))


__all__ = ["app_from_env", "create_app"]
