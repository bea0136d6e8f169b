"""What route handlers receive through ``Depends``: the settings, the libraries, the worker pool, the writer check.

All of it is created once in the app's lifespan and kept on ``app.state``.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from .errors import ForbiddenError, UnauthorizedError, WritesDisabledError
from .inference import InferencePool
from .libraries import LibraryRegistry
from .settings import ServiceSettings


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_registry(request: Request) -> LibraryRegistry:
    return request.app.state.registry


def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


Settings = Annotated[ServiceSettings, Depends(get_settings)]
Registry = Annotated[LibraryRegistry, Depends(get_registry)]
Pool = Annotated[InferencePool, Depends(get_pool)]


def require_writer(request: Request) -> None:
    """Writes need ``--allow-writes`` and ``Authorization: Bearer <token>``: 403 when off, 401 without, 403 wrong."""
    settings = get_settings(request)
    if not settings.allow_writes:
        raise WritesDisabledError("this server is read-only (start it with --allow-writes and a token)")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError(
            "authorization: send the write token as `Authorization: Bearer <token>`",
            field="authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(token.encode(), settings.token.encode()):
        raise ForbiddenError("authorization: the token is not this server's write token", field="authorization")


__all__ = ["Pool", "Registry", "Settings", "get_pool", "get_registry", "get_settings", "require_writer"]
