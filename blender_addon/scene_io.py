"""Blender-side file work, on the main thread only: a .blend image to PNG, objects to GLB, a GLB into the scene."""

from __future__ import annotations

import array
import tempfile
from pathlib import Path

import bpy
from mathutils import Vector

COLLECTION_NAME = "Shape Search"


class SceneIOError(Exception):
    """A file the add-on could not write or import; ``str()`` is the sentence to report."""


def temporary_folder() -> Path:
    """A fresh folder for one job's query files; the job removes it when the upload is done."""
    return Path(tempfile.mkdtemp(prefix="hf-cmah-shape-search-"))


def image_to_png(image: bpy.types.Image, path: Path) -> Path:
    """Writes a .blend image (packed, generated, painted or from a file) to ``path`` as PNG.

    The pixels go through a temporary image: saving the user's own image would change its source,
    path or format, and ``Image.copy()`` loses unsaved paint on generated images.
    """
    width, height = image.size
    if width == 0 or height == 0:
        raise SceneIOError(f"The image {image.name!r} has no pixels (is its file missing?).")
    channels = image.channels
    pixels = array.array("f", bytes(4 * width * height * channels))
    image.pixels.foreach_get(pixels)
    if channels != 4:
        pixels = _to_rgba(pixels, channels)
    scratch = bpy.data.images.new(
        f".{image.name} (shape search)", width, height, alpha=True, float_buffer=image.is_float
    )
    try:
        scratch.colorspace_settings.name = image.colorspace_settings.name
        scratch.pixels.foreach_set(pixels)
        scratch.filepath_raw = str(path)
        scratch.file_format = "PNG"
        scratch.save()
    except RuntimeError as error:
        raise SceneIOError(
            f"The image {image.name!r} could not be written as PNG to {path}: {_blender_message(error)}"
        ) from None
    finally:
        bpy.data.images.remove(scratch)
    return path


def _to_rgba(pixels: array.array, channels: int) -> array.array:
    """Grey, grey + alpha or RGB pixels spread to RGBA (rare in Blender, which mostly keeps four channels)."""
    rgba = array.array("f", bytes(4 * 4 * (len(pixels) // channels)))
    count = len(pixels) // channels
    for index in range(count):
        base = pixels[index * channels : (index + 1) * channels]
        red, green, blue = (base[0], base[0], base[0]) if channels < 3 else tuple(base[:3])
        alpha = base[-1] if channels in (2, 4) else 1.0
        rgba[4 * index : 4 * index + 4] = array.array("f", (red, green, blue, alpha))
    return rgba


def export_glb(context: bpy.types.Context, objects: list[bpy.types.Object], path: Path) -> Path:
    """Exports ``objects`` (world transforms and modifiers applied, no materials) to one GLB.

    The glTF exporter exports the selection, so the selection is set for the export and restored after:
    the user's scene is left as it was.
    """
    view_layer = context.view_layer
    selected = [obj for obj in view_layer.objects if obj.select_get()]
    active = view_layer.objects.active
    try:
        for obj in selected:
            obj.select_set(False)
        for obj in objects:
            obj.select_set(True)
        result = bpy.ops.export_scene.gltf(
            filepath=str(path),
            export_format="GLB",
            use_selection=True,
            export_apply=True,
            export_materials="NONE",
            export_animations=False,
            export_cameras=False,
            export_lights=False,
            export_extras=False,
        )
    except RuntimeError as error:
        raise SceneIOError(
            f"Exporting {', '.join(obj.name for obj in objects)} to GLB failed: {_blender_message(error)}"
        ) from None
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active
    if "FINISHED" not in result or not path.is_file():
        raise SceneIOError(f"Exporting {', '.join(obj.name for obj in objects)} to GLB wrote no file.")
    return path


def import_glb(context: bpy.types.Context, path: Path, name: str, *, scale: float, fit_size: float) -> bpy.types.Object:
    """Imports a GLB as one object named ``name`` at the 3D cursor, in the "Shape Search" collection, selected
    and active; several imported objects hang under an empty of that name. Returns that (root) object.

    ``fit_size > 0`` first scales the shape so its largest dimension is ``fit_size``; then ``scale`` applies.
    On failure the objects made so far are removed again: the scene is left as it was.
    """
    scene = context.scene
    before_objects = set(bpy.data.objects)
    before_meshes = set(bpy.data.meshes)
    before_materials = set(bpy.data.materials)
    try:
        result = bpy.ops.import_scene.gltf(filepath=str(path))
        if "FINISHED" not in result:
            raise SceneIOError(f"Importing {path.name} for {name!r} did not finish ({', '.join(result)}).")
        created = [obj for obj in bpy.data.objects if obj not in before_objects]
        if not any(obj.type == "MESH" and len(obj.data.vertices) for obj in created):
            raise SceneIOError(f"The mesh of {name!r} ({path.name}) holds no geometry.")
    except (RuntimeError, SceneIOError) as error:
        _remove_new(before_objects, before_meshes, before_materials)
        if isinstance(error, SceneIOError):
            raise
        raise SceneIOError(f"Importing the mesh of {name!r} ({path.name}) failed: {_blender_message(error)}") from None

    roots = [obj for obj in created if obj.parent not in created]
    if len(roots) == 1:
        root = roots[0]
    else:
        root = bpy.data.objects.new(name, None)
        for obj in roots:
            obj.parent = root
        created.append(root)
    root.name = name
    if root.type == "MESH":
        root.data.name = name
    collection = _collection(scene)
    for obj in created:
        for owner in list(obj.users_collection):
            owner.objects.unlink(obj)
        collection.objects.link(obj)

    factor = scale
    if fit_size > 0:
        context.view_layer.update()
        largest = _largest_dimension(created)
        if largest > 0:
            factor *= fit_size / largest
    root.scale = root.scale * factor
    root.location = scene.cursor.location.copy()
    context.view_layer.update()
    for obj in context.view_layer.objects:
        obj.select_set(obj in created)
    context.view_layer.objects.active = root
    return root


def _collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's "Shape Search" collection, made (and linked to the scene) the first time."""
    collection = bpy.data.collections.get(COLLECTION_NAME)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION_NAME)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def _largest_dimension(objects: list[bpy.types.Object]) -> float:
    """Largest side of the world-space bounding box of the objects' meshes."""
    corners = [obj.matrix_world @ Vector(corner) for obj in objects if obj.type == "MESH" for corner in obj.bound_box]
    if not corners:
        return 0.0
    return max(max(c[axis] for c in corners) - min(c[axis] for c in corners) for axis in range(3))


def _remove_new(objects: set, meshes: set, materials: set) -> None:
    for obj in [obj for obj in bpy.data.objects if obj not in objects]:
        bpy.data.objects.remove(obj)
    for mesh in [mesh for mesh in bpy.data.meshes if mesh not in meshes]:
        bpy.data.meshes.remove(mesh)
    for material in [material for material in bpy.data.materials if material not in materials]:
        bpy.data.materials.remove(material)


def _blender_message(error: RuntimeError) -> str:
    """An operator's RuntimeError without Blender's "Error: " prefix and trailing newline."""
    return str(error).strip().removeprefix("Error: ")
