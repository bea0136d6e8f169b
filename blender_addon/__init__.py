"""Shape Search: find the shapes of an hf-cmah library that match a reference image or a mesh, and import them.

A client of the search service (``hf-cmah serve``): Blender's Python has no torch, so the model never runs
here. This file only wires the parts together; each part is a module with one role.
"""

from __future__ import annotations

import bpy

from . import operators, panel, preferences, props, session

# Property groups first (the state points at them), the panel last (it draws the operators).
CLASSES = (*props.CLASSES, *preferences.CLASSES, *operators.CLASSES, *panel.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register_properties()
    session.start()


def unregister() -> None:
    session.stop()
    props.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
