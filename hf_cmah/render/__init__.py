"""The Blender renderer: ``render_views.py`` runs inside Blender, ``launcher`` drives it from hf_cmah."""

from .launcher import ENGINES, LIGHTINGS, RENDER_SCRIPT, RenderItem, RenderSettings, find_blender, render_batches

__all__ = ["ENGINES", "LIGHTINGS", "RENDER_SCRIPT", "RenderItem", "RenderSettings", "find_blender", "render_batches"]
