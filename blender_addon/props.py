"""The sidebar's state on the window manager: the query settings, the service's models, the results, the status.

On ``WindowManager`` rather than ``Scene`` so that none of it is saved into the user's .blend files.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)


class SHAPESEARCH_PG_model(bpy.types.PropertyGroup):
    """One model of the service (``name`` is its name, for ``prop_search``)."""

    code_bits: IntProperty(name="Code Bits")
    shapes: IntProperty(name="Shapes")
    rerank: BoolProperty(name="Rerank", description="Whether the service can rerank this model's hits by cosine")


class SHAPESEARCH_PG_result(bpy.types.PropertyGroup):
    """One search hit (``name`` is the shape id)."""

    rank: IntProperty(name="Rank")
    label: StringProperty(name="Label")
    distance: IntProperty(name="Distance", description="Hamming distance of the codes; -1 when not given")
    score: FloatProperty(name="Score", description="Cosine after rerank")
    has_score: BoolProperty(name="Has Score")
    mesh_url: StringProperty(name="Mesh URL")
    thumbnail_url: StringProperty(name="Thumbnail URL")
    thumbnail_path: StringProperty(name="Thumbnail", subtype="FILE_PATH")
    thumbnail_error: StringProperty(name="Thumbnail Error")


class SHAPESEARCH_PG_state(bpy.types.PropertyGroup):
    image_source: EnumProperty(
        name="Reference",
        items=(
            ("FILE", "File", "An image file on disk"),
            ("DATABLOCK", "Blend Image", "An image of this .blend file, packed or not"),
        ),
        default="FILE",
    )
    image_path: StringProperty(name="Image File", subtype="FILE_PATH", description="The reference image")
    image: PointerProperty(name="Image", type=bpy.types.Image, description="The reference image")
    model: StringProperty(name="Model", description="The service's model (and code length); empty: its default")
    models: CollectionProperty(type=SHAPESEARCH_PG_model)
    k: IntProperty(name="Results", description="How many shapes to find", default=12, min=1, max=100)
    rerank: IntProperty(
        name="Rerank",
        description="Rerank this many Hamming neighbours by cosine on the service (0: off; models that support it)",
        default=0,
        min=0,
        max=1000,
    )
    service_version: StringProperty(name="Service Version", description="Empty until the service has answered")
    writes: BoolProperty(name="Writes", description="Whether the service accepts new shapes (--allow-writes)")
    results: CollectionProperty(type=SHAPESEARCH_PG_result)
    summary: StringProperty(name="Summary", description="What the last search was")
    status: StringProperty(name="Status")
    status_level: EnumProperty(
        items=(("INFO", "Info", ""), ("BUSY", "Busy", ""), ("ERROR", "Error", "")),
        default="INFO",
    )
    add_label: StringProperty(name="Label", description="Label given to the shapes added to the library")


def get(context: bpy.types.Context) -> SHAPESEARCH_PG_state:
    return context.window_manager.shape_search


CLASSES = (SHAPESEARCH_PG_model, SHAPESEARCH_PG_result, SHAPESEARCH_PG_state)


def register_properties() -> None:
    bpy.types.WindowManager.shape_search = PointerProperty(type=SHAPESEARCH_PG_state)


def unregister_properties() -> None:
    del bpy.types.WindowManager.shape_search
