"""The Gradio page: image → shapes and shape → shapes, a gallery of hits, a 3D viewer and the GLB download.

It calls the same ``search_library`` as the JSON API. Files a visitor gets (thumbnails in the
gallery, the chosen mesh) are hard-linked into a folder of that visitor's session, named for
the shape, and removed when the session ends, so downloads never leak between visitors.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from ..errors import HFCMAHError
from ..images import load_image
from .libraries import LibraryRegistry
from .retrieval import MAX_K, SearchOutcome, search_library
from .settings import ServiceSettings
from .uploads import SHAPE_SUFFIXES, Upload, read_shape

TITLE = "hf-cmah · image ⇄ 3D shape search"
INTRO = (
    "Drop in a photo, a sketch or a render and get the closest 3D shapes of the library; "
    "or drop in a mesh and get its nearest neighbours. Click a result to look at it in 3D and download the GLB."
)


class SessionFiles:
    """One folder per visitor session under ``root``; what the page shows that visitor is linked in there."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="hf-cmah-ui-"))

    def folder(self, request: gr.Request | None) -> Path:
        session = re.sub(r"[^A-Za-z0-9_-]", "", getattr(request, "session_hash", None) or "") or "anonymous"
        folder = self.root / session
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def link(self, source: Path, name: str, request: gr.Request | None) -> str:
        """``source`` under the session folder as ``name`` (a hard link, a copy across file systems)."""
        target = self.folder(request) / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "file")
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return str(target)

    def forget(self, request: gr.Request | None) -> None:
        shutil.rmtree(self.folder(request), ignore_errors=True)

    def close(self) -> None:
        """Remove every session's files (at shutdown)."""
        shutil.rmtree(self.root, ignore_errors=True)


def build_ui(registry: LibraryRegistry, settings: ServiceSettings, files: SessionFiles) -> gr.Blocks:
    """The Blocks of the page; its events are named (``search_image``, ``search_shape``, ``show_shape``) for
    ``gradio_client``."""

    def ui_errors(function):
        @functools.wraps(function)  # keeps the signature: Gradio injects gr.Request by its annotation
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except HFCMAHError as error:  # bad uploads, unknown shapes, still loading: said in the page
                raise gr.Error(str(error)) from None

        return wrapper

    @ui_errors
    def search_image(image: str | None, model: str | None, k: float, request: gr.Request):
        """Search the library with an image file."""
        if not image:
            raise gr.Error("image: upload an image or pick an example first")
        library = registry.get(model)
        query = load_image(image, "image", settings.max_image_pixels)
        return present(search_library(library, "image", query, int(k)), request)

    @ui_errors
    def search_shape(shape: str | None, model: str | None, k: float, request: gr.Request):
        """Search the library with a mesh or point file."""
        if not shape:
            raise gr.Error("shape: upload a mesh or point file first")
        library = registry.get(model)
        processor = library.index.encoder.processor
        upload = Upload("shape", Path(shape).name, Path(shape).read_bytes())
        query = read_shape(upload, processor.num_points, processor.seed)
        return present(search_library(library, "shape", query, int(k)), request)

    @ui_errors
    def show_shape(shape_id: str, model: str | None, request: gr.Request):
        """The GLB of one shape (for the 3D viewer and the download)."""
        library = registry.get(model)
        mesh = files.link(library.asset(shape_id, "mesh"), f"{shape_id.replace('/', '_')}.glb", request)
        return mesh, mesh

    def present(outcome: SearchOutcome, request: gr.Request):
        library = registry.get(outcome.library)
        gallery = []
        for hit in outcome.hits:
            caption = f"{hit.rank}. {hit.shape_id} · {hit.label or '—'} · d={hit.distance}"
            if hit.thumbnail:
                picture = files.link(library.asset(hit.shape_id, "thumbnail"), f"{hit.rank:03d}.png", request)
                gallery.append((picture, caption))
        summary = (
            f"**{len(outcome.hits)} shapes** from `{outcome.library}` ({outcome.code_bits}-bit codes) in "
            f"**{outcome.latency_ms:.1f} ms** · query code `{outcome.code}`"
        )
        return gallery, summary, [hit.shape_id for hit in outcome.hits if hit.thumbnail]

    def on_select(shown: list[str], model: str | None, event: gr.SelectData, request: gr.Request):
        return show_shape(shown[event.index], model, request)

    def refresh(model: str | None):
        """The loading status and the model choices (they appear once the libraries are loaded)."""
        choices = list(registry.libraries)
        status = (
            ""
            if registry.ready
            else f"⏳ **Preparing the shape library** — {registry.status}. This page updates itself."
        )
        value = model if model in choices else registry.default
        return (
            gr.update(value=status, visible=not registry.ready),
            gr.update(choices=choices, value=value),
            gr.Timer(active=not registry.ready),
        )

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        status = gr.Markdown(visible=False)
        with gr.Row():
            model = gr.Dropdown(label="Model / library", choices=list(registry.libraries), value=registry.default)
            k = gr.Slider(1, MAX_K, value=10, step=1, label="Results (k)")
        with gr.Tabs():
            with gr.Tab("Image → shapes"):
                image = gr.Image(type="filepath", label="Query image", sources=["upload", "clipboard"], height=280)
                if settings.examples:
                    gr.Examples(examples=[[path] for path in settings.examples], inputs=image, label="Example queries")
                image_button = gr.Button("Search", variant="primary", elem_id="search-image")
            with gr.Tab("Shape → shapes"):
                shape = gr.File(label="Query mesh or point file", file_types=list(SHAPE_SUFFIXES))
                shape_button = gr.Button("Search", variant="primary", elem_id="search-shape")
        summary = gr.Markdown(elem_id="search-summary")
        gallery = gr.Gallery(label="Nearest shapes", columns=5, height="auto", allow_preview=False, elem_id="results")
        shown = gr.State([])
        with gr.Row():
            viewer = gr.Model3D(label="Selected shape", elem_id="viewer", height=360)
            download = gr.File(label="Download (GLB)")
        shape_id = gr.Textbox(visible=False)
        timer = gr.Timer(2.0, active=not registry.ready)

        image_button.click(search_image, [image, model, k], [gallery, summary, shown], api_name="search_image")
        shape_button.click(search_shape, [shape, model, k], [gallery, summary, shown], api_name="search_shape")
        gallery.select(on_select, [shown, model], [viewer, download], api_name=False)
        shape_id.submit(show_shape, [shape_id, model], [viewer, download], api_name="show_shape")
        demo.load(refresh, [model], [status, model, timer], api_name=False)
        timer.tick(refresh, [model], [status, model, timer], api_name=False)

        def forget_session(request: gr.Request) -> None:
            files.forget(request)

        demo.unload(forget_session)
    return demo


__all__ = ["SessionFiles", "build_ui"]
