"""Thumbnails of a library's meshes, rendered by the project's Blender renderer for an index's ``assets/``.

One view per mesh (workbench, azimuth 30°, elevation 25°, composited on white), many meshes per
Blender process. Renders are cached the way the data builders cache theirs
(``<cache>/renders/<file sha256>-<settings digest>/``, ``cameras.json`` marking a finished one),
so a rerun, or a build resumed after a kill, renders only the meshes not done yet.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError, MeshLoadError
from ..geometry import load_mesh, normalize_mesh
from ..render.launcher import (
    RenderItem,
    RenderSettings,
    find_blender,
    render_batches,
    render_source,
    shows_own_materials,
)
from .assets import store_asset

THUMBNAIL_SETTINGS = RenderSettings(
    engine="workbench", resolution=256, num_views=1, elevations=(25.0,), azimuth_offset=30.0
)
WHITE = (255, 255, 255)


def check_renderer(blender: str | None = None) -> None:
    """Fail before any encoding when thumbnails are asked for and no Blender can render them."""
    try:
        find_blender(blender)
    except ConfigError as error:
        raise ConfigError(
            f"thumbnails: {error}; or build without thumbnails (with_thumbnails=False, --no-thumbnails)"
        ) from None


def render_thumbnails(
    meshes: dict[str, Path],
    root: Path,
    *,
    size: int = THUMBNAIL_SETTINGS.resolution,
    blender: str | None = None,
    strict: bool = False,
    progress: bool = True,
) -> tuple[dict[str, str], dict[str, str]]:
    """Render each mesh file of ``{shape_id: path}`` and store its thumbnail PNG under ``root/assets``.

    Returns ``({shape_id: asset name}, {shape_id: why it has none})``; with ``strict`` the first
    mesh that cannot be loaded or rendered raises MeshLoadError instead.
    """
    from tqdm.auto import tqdm

    from ..data.build import composite_render, mesh_file_key, render_cache_dir, write_render_mesh

    settings = replace(THUMBNAIL_SETTINGS, resolution=size)
    views: dict[str, Path] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="hf-cmah-thumbnails-") as workdir:
        items = []
        for number, (shape_id, path) in enumerate(meshes.items()):
            key = mesh_file_key(path)
            own_materials = shows_own_materials(path, settings)  # the asset's own colours and textures
            views[shape_id] = render_cache_dir(key, settings, own_materials=own_materials)
            if (views[shape_id] / "cameras.json").is_file():
                continue
            try:
                mesh = normalize_mesh(load_mesh(path))
            except MeshLoadError as error:
                if strict:
                    raise
                notes[shape_id] = f"no thumbnail: {error}"
                continue
            write_render_mesh(mesh, Path(workdir) / f"{number}.npz")  # y-up, as the renderer takes it
            source = render_source(path, mesh.metadata["to_normalized"], settings) if own_materials else None
            npz = Path(workdir) / f"{number}.npz"
            items.append(RenderItem(shape_id, npz, views[shape_id], settings.views_for(key), source))
        bar = tqdm(total=len(items), desc="thumbnails", unit="shape", disable=not (progress and items))

        def on_done(shape_id: str, error: str | None) -> None:
            bar.update(1)
            if error is not None and strict:
                raise MeshLoadError(f"--strict: {shape_id}: the thumbnail render failed: {error}")

        try:
            outcome = render_batches(items, settings, blender, on_done=on_done) if items else {}
        finally:
            bar.close()
    notes.update(
        {shape_id: f"no thumbnail: the render failed ({error})" for shape_id, error in outcome.items() if error}
    )
    names = {
        shape_id: store_asset(root, composite_render(folder / "view_00.png", WHITE)["bytes"], ".png")
        for shape_id, folder in views.items()
        if shape_id not in notes
    }
    return names, notes


__all__ = ["THUMBNAIL_SETTINGS", "check_renderer", "render_thumbnails"]
