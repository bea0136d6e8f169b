"""The web app: a FastAPI JSON API (``/api/v1``) and a Gradio page on it, as `hf-cmah serve` and the Space run it.

``create_app(ServiceSettings(libraries=(LibrarySpec(name, model, index), ...)))`` gives the ASGI
app; see docs/SERVICE.md for the API. The names load on first use (PEP 562), so that the CLI can
register `hf-cmah serve` without importing FastAPI and Gradio.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "create_app": ".app",
    "Library": ".libraries",
    "LibraryRegistry": ".libraries",
    "LibrarySpec": ".settings",
    "ServiceSettings": ".settings",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


__all__ = sorted(_EXPORTS)
