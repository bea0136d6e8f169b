"""The web app: a FastAPI JSON API (``/api/v1``) and a Gradio page on it, as `hf-cmah serve` and the Space run it.

``create_app(ServiceSettings(libraries=(LibrarySpec(name, model, index), ...)))`` gives the ASGI
app; see docs/SERVICE.md for the API.
"""

from .app import create_app
from .libraries import Library, LibraryRegistry
from .settings import LibrarySpec, ServiceSettings

__all__ = ["Library", "LibraryRegistry", "LibrarySpec", "ServiceSettings", "create_app"]
