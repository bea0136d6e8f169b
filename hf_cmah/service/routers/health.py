"""Liveness (``/healthz``) and what the server serves (``/api/v1/info``)."""

from __future__ import annotations

from fastapi import APIRouter

from ... import __version__
from ..dependencies import Registry, Settings
from ..schemas import Health, LibraryInfo, ServiceInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Answers as soon as the process serves HTTP, even while the libraries load."""
    return Health(status="ok")


@router.get("/api/v1/info", response_model=ServiceInfo)
async def info(registry: Registry, settings: Settings) -> ServiceInfo:
    """The libraries (model, bits, shapes), the default one, whether writes are on, the version."""
    models = [
        LibraryInfo(
            name=library.name,
            model=library.spec.model,
            code_bits=library.index.code_bits,
            shapes=len(library.index),
            rerank=library.index.embeddings is not None,
            writable=settings.allow_writes and library.writable,
        )
        for library in registry.libraries.values()
    ]
    return ServiceInfo(
        version=__version__,
        status=registry.status,
        default_model=registry.default,
        writes=settings.allow_writes,
        max_upload_mb=settings.max_upload_mb,
        models=models,
    )
