"""The "Shape Search" tab of the 3D viewport's sidebar: query, status, the results grid, the library."""

from __future__ import annotations

import textwrap

import bpy

from . import preferences, props, session

STATUS_ICONS = {"INFO": "INFO", "BUSY": "SORTTIME", "ERROR": "ERROR"}
THUMBNAIL_SCALE = 5.0
# Labels are cut, not wrapped: long statuses are split at about this many pixels per character.
CHAR_WIDTH_PX = 7.0
DEFAULT_WRAP_CHARS = 48
MIN_WRAP_CHARS = 20


class SHAPESEARCH_PT_panel(bpy.types.Panel):
    bl_idname = "SHAPESEARCH_PT_panel"
    bl_label = "Shape Search"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Shape Search"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = props.get(context)
        prefs = preferences.get(context)

        row = layout.row(align=True)
        row.label(text=prefs.service_url, icon="URL")
        row.operator("shape_search.refresh_models", text="", icon="FILE_REFRESH")
        column = layout.column(align=True)
        column.prop_search(state, "model", state, "models", text="Model", icon="NETWORK_DRIVE")
        model = state.models.get(state.model)
        if model is not None:
            column.label(text=f"{model.code_bits}-bit codes · {model.shapes} shapes")
        row = column.row(align=True)
        row.prop(state, "k")
        rerank = row.row(align=True)
        rerank.enabled = model is None or model.rerank
        rerank.prop(state, "rerank")

        box = layout.box()
        box.row().prop(state, "image_source", expand=True)
        if state.image_source == "FILE":
            box.prop(state, "image_path", text="")
        else:
            box.prop_search(state, "image", bpy.data, "images", text="")
        box.operator("shape_search.search_image", icon="VIEWZOOM")
        layout.operator("shape_search.search_selected", icon="MESH_DATA")

        column = layout.column(align=True)
        column.alert = state.status_level == "ERROR"
        for number, line in enumerate(wrap(state.status or "Ready", context)):
            row = column.row()
            row.label(text=line, icon=STATUS_ICONS[state.status_level] if number == 0 else "BLANK1")
            if number == 0 and session.busy():
                row.operator("shape_search.cancel", text="", icon="CANCEL")

        if state.results:
            draw_results(layout, state)

        box = layout.box()
        box.label(text="Library", icon="ASSET_MANAGER")
        box.prop(state, "add_label")
        read_only = bool(state.service_version) and not state.writes
        row = box.row()
        row.enabled = bool(prefs.token) and not read_only
        row.operator("shape_search.add_selected", icon="ADD")
        if read_only:
            box.label(text="This service runs without --allow-writes.", icon="LOCKED")
        elif not prefs.token:
            box.label(text="Set the token in the preferences to add shapes.", icon="LOCKED")


def wrap(text: str, context: bpy.types.Context) -> list[str]:
    """A status split to the sidebar's width: Blender's labels do not wrap, and errors are sentences."""
    region = context.region
    pixels_per_char = CHAR_WIDTH_PX * context.preferences.system.ui_scale
    width = int(region.width / pixels_per_char) if region is not None else DEFAULT_WRAP_CHARS
    return textwrap.wrap(text, max(width, MIN_WRAP_CHARS)) or [text]


def draw_results(layout: bpy.types.UILayout, state: props.SHAPESEARCH_PG_state) -> None:
    """The results grid: thumbnail (a placeholder until it arrives), shape id, label · distance, Import."""
    if state.summary:
        layout.label(text=state.summary)
    grid = layout.grid_flow(row_major=True, columns=2, even_columns=True, even_rows=True, align=True)
    current = session.current()
    for index, result in enumerate(state.results):
        cell = grid.box().column(align=True)
        icon = current.icon_id(result.thumbnail_path)
        if icon:
            cell.template_icon(icon_value=icon, scale=THUMBNAIL_SCALE)
        else:
            cell.label(text="no thumbnail" if result.thumbnail_error else "…", icon="IMAGE_DATA")
        cell.label(text=result.name)
        detail = result.label or "—"
        if result.distance >= 0:
            detail += f" · d {result.distance}"
        if result.has_score:
            detail += f" · {result.score:.3f}"
        cell.label(text=detail)
        button = cell.row()
        button.enabled = bool(result.mesh_url)
        button.operator("shape_search.import_result", icon="IMPORT").index = index


CLASSES = (SHAPESEARCH_PT_panel,)
