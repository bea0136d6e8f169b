"""Render several views of many meshes in one Blender process (runs in Blender's Python).

Imports only ``bpy``, ``mathutils``, ``numpy`` (shipped with Blender) and the standard
library, never ``hf_cmah``: it runs as ``.venv-blender/bin/python render_views.py JOB`` or
``blender --background --factory-startup --python render_views.py -- JOB``.

The job file (written by ``hf_cmah.render.launcher``) is JSON::

    {"settings": {"engine": "cycles", "samples": 16, "resolution": 224, "fov_deg": 40,
                  "margin": 1.05, "lighting": "studio", "device": "auto", "threads": 0,
                  "denoise": false},
     "meshes": [{"id": "m5", "mesh": "m5.npz", "out_dir": "renders/ab12",
                 "source": {"path": "chair.obj", "format": "obj", "to_normalized": [[...4×4...]]},
                 "views": [{"azimuth": 0.0, "elevation": 30.0}, ...]}],
     "results": "results.jsonl"}

``engine`` is ``cycles``, ``workbench`` or ``mixed`` (then each view names its ``engine``).
``lighting`` names a preset of ``CYCLES_RIGS`` / ``WORKBENCH_RIGS`` (studio, side, sun_sky,
soft_box, low_key); a view may carry its own ``lighting``, ``light_rotation``, ``fov_deg``,
``distance_scale`` and ``roll``. Each ``mesh`` is an ``.npz`` with ``vertices`` (V, 3) float32 in
a y-up frame, ``faces`` (F, 3) int32 and optionally ``colors`` (V, 3) in 0..1; an optional
``source`` is the asset file to show instead, with its materials (see ``import_source``). For each
mesh the script writes ``view_00.png`` … (RGBA, transparent background) and ``cameras.json`` (each
view's camera, engine, lighting and ``look``: ``importer:obj|gltf`` or ``vertex_colors``) into
``out_dir``, then appends one JSON line ``{"id", "ok", "error"}`` to ``results`` — line by line,
so a crash loses only the mesh being rendered.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path

import bpy
import mathutils
import numpy as np

# Our data is y-up; Blender is z-up: (x, y, z)_ours -> (x, -z, y)_blender.
Y_UP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
DEFAULT_GREY = (0.8, 0.8, 0.8, 1.0)
WHITE_LIGHT = (1.0, 1.0, 1.0)
# One light rig per lighting preset, fixed in the world so that shading differs between views the way it
# does between photos; a view's ``light_rotation`` turns the whole rig about the vertical axis.
# Cycles: (world strength, lamps), a lamp (type, name, energy, Euler rotation in degrees, colour,
# location or None for suns).
CYCLES_RIGS = {
    # a key light from the upper front-left and a weaker fill from the right: what datasets are lit with
    "studio": (
        0.6,
        (
            ("SUN", "key", 3.0, (50.0, 10.0, -40.0), WHITE_LIGHT, None),
            ("SUN", "fill", 1.0, (60.0, -20.0, 120.0), WHITE_LIGHT, None),
        ),
    ),
    # one low warm sun from the left, hard shadows, little ambient light
    "side": (0.15, (("SUN", "side", 5.0, (65.0, 0.0, -50.0), (1.0, 0.8, 0.6), None),)),
    # a high warm sun under a blue sky (the world is a sky texture)
    "sun_sky": (0.5, (("SUN", "sun", 4.0, (35.0, 0.0, -30.0), (1.0, 0.95, 0.85), None),)),
    # two large soft area lights left and right of the camera, a bright world: product shots
    "soft_box": (
        0.4,
        (
            ("AREA", "box_left", 250.0, (55.0, 0.0, -45.0), WHITE_LIGHT, (-2.8, -2.8, 3.0)),
            ("AREA", "box_right", 120.0, (55.0, 0.0, 45.0), WHITE_LIGHT, (2.8, -2.8, 3.0)),
        ),
    ),
    # a strong rim light from behind and a faint key, a dark world: moody concept renders
    "low_key": (
        0.05,
        (
            ("SUN", "rim", 4.0, (-50.0, 0.0, -20.0), (0.9, 0.9, 1.0), None),
            ("SUN", "key", 0.6, (60.0, 0.0, -60.0), WHITE_LIGHT, None),
        ),
    ),
}
# Workbench: (studio light, base rotation about z in degrees or None for camera-space lighting, exposure).
WORKBENCH_RIGS = {
    "studio": ("Default", None, 0.0),
    "side": ("rim.sl", 90.0, 0.0),
    "sun_sky": ("outdoor.sl", 0.0, 0.0),
    "soft_box": ("basic.sl", 0.0, 0.0),
    "low_key": ("rim.sl", 200.0, -1.5),  # Workbench has no dark world: the exposure makes the key
}
LIGHT_TAG = "hf_cmah_light"
SKY_COLOUR = (0.35, 0.5, 0.8, 1.0)
GREY_WORLD = (0.05, 0.05, 0.05, 1.0)  # the Background node's own default: what renders have always been lit by


def main(argv: list[str]) -> int:
    """Render every mesh of the job; one mesh's failure is recorded, never fatal."""
    args = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    if len(args) != 1:
        print("usage: render_views.py JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    settings = job["settings"]
    scene = setup_scene(settings)
    with open(job["results"], "a", encoding="utf-8") as results:
        for item in job["meshes"]:
            started = time.perf_counter()
            try:
                render_mesh(scene, settings, item)
                record = {"id": item["id"], "ok": True, "error": None}
            except Exception as error:  # one bad mesh must not end the batch; the launcher reports it
                traceback.print_exc()
                record = {"id": item["id"], "ok": False, "error": f"{type(error).__name__}: {error}"}
            record["seconds"] = round(time.perf_counter() - started, 3)
            results.write(json.dumps(record) + "\n")
            results.flush()
    return 0


def setup_scene(settings: dict) -> bpy.types.Scene:
    """An empty scene with the camera and the settings of both engines (a build may mix them per view)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    render = scene.render
    render.resolution_x = render.resolution_y = int(settings["resolution"])
    render.resolution_percentage = 100
    render.film_transparent = True
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    if settings.get("threads"):
        render.threads_mode = "FIXED"
        render.threads = int(settings["threads"])
    camera_data = bpy.data.cameras.new("camera")
    camera_data.angle = math.radians(float(settings["fov_deg"]))
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    world = bpy.data.worlds.new("world")
    world.color = (0.35, 0.35, 0.35)
    scene.world = world
    setup_workbench(scene)
    if settings["engine"] != "workbench":
        setup_cycles(scene, settings)
    return scene


def setup_workbench(scene: bpy.types.Scene) -> None:
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "VERTEX"
    shading.show_cavity = False


def setup_cycles(scene: bpy.types.Scene, settings: dict) -> None:
    cycles = scene.cycles
    scene.render.engine = "CYCLES"  # the cycles settings exist once the engine has been selected
    cycles.samples = int(settings["samples"])
    cycles.use_denoising = bool(settings.get("denoise", False))
    cycles.use_adaptive_sampling = False
    cycles.max_bounces = 4
    cycles.device = "GPU" if settings.get("device", "auto") != "cpu" and enable_gpu() else "CPU"
    scene.world.use_nodes = True


def apply_lighting(scene: bpy.types.Scene, engine: str, lighting: str, rotation_deg: float) -> None:
    """Light the scene with the preset ``lighting``, its rig turned ``rotation_deg`` about the vertical."""
    if engine == "workbench":
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        studio_light, base_rotation, exposure = WORKBENCH_RIGS[lighting]
        scene.view_settings.exposure = exposure
        shading.studio_light = studio_light
        # Camera-space lighting (the default studio) cannot turn with the world; any rotation needs world space.
        shading.use_world_space_lighting = base_rotation is not None or rotation_deg != 0.0
        shading.studiolight_rotate_z = math.radians(((base_rotation or 0.0) + rotation_deg + 180.0) % 360.0 - 180.0)
        return
    scene.render.engine = "CYCLES"
    scene.view_settings.exposure = 0.0
    for obj in [obj for obj in scene.objects if obj.get(LIGHT_TAG)]:
        light = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.lights.remove(light)
    world_strength, lamps = CYCLES_RIGS[lighting]
    set_world(scene.world, world_strength, sky=lighting == "sun_sky")
    turn = mathutils.Matrix.Rotation(math.radians(rotation_deg), 4, "Z")
    for kind, name, energy, rotation, colour, location in lamps:
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, kind))
        light[LIGHT_TAG] = True
        light.data.energy = energy
        light.data.color = colour
        if kind == "AREA":
            light.data.size = 2.0
        placed = mathutils.Euler([math.radians(angle) for angle in rotation]).to_matrix().to_4x4()
        placed.translation = location or (0.0, 0.0, 0.0)
        light.matrix_world = turn @ placed
        scene.collection.objects.link(light)


def set_world(world: bpy.types.World, strength: float, sky: bool) -> None:
    """A uniform dark-grey world, or a flat sky colour: the ambient light (the film stays transparent)."""
    background = world.node_tree.nodes["Background"]
    background.inputs["Strength"].default_value = strength
    background.inputs["Color"].default_value = SKY_COLOUR if sky else GREY_WORLD


def enable_gpu() -> bool:
    """Switch Cycles to the first GPU backend that has a device; False on CPU-only machines."""
    preferences = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI"):
        try:
            preferences.compute_device_type = backend
        except TypeError:
            continue
        preferences.get_devices()
        gpus = [device for device in preferences.devices if device.type != "CPU"]
        if gpus:
            for device in preferences.devices:
                device.use = device.type != "CPU"
            return True
    return False


def render_mesh(scene: bpy.types.Scene, settings: dict, item: dict) -> None:
    """Render all views of one mesh into ``item["out_dir"]`` and record the cameras.

    ``item["mesh"]`` (normalised, y-up) frames every view; with an ``item["source"]`` the asset file
    itself is imported with Blender's importer and shown instead (its materials and textures), moved
    onto the normalised geometry. A source that fails to import falls back to the plain mesh, and
    each view records which of the two it shows (``look``).
    """
    data = np.load(item["mesh"])
    vertices = np.asarray(data["vertices"], dtype=np.float64) @ Y_UP_TO_BLENDER.T
    objects, look = import_source(scene, item["source"]) if item.get("source") else ([], "vertex_colors")
    if not objects:
        faces = np.asarray(data["faces"], dtype=np.int64)
        colors = np.asarray(data["colors"], dtype=np.float64) if "colors" in data.files else None
        objects = [build_object(scene, vertices, faces, colors)]
    try:
        # Frame the bounding sphere around the box centre so that every shape fills the image alike.
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
        radius = float(np.linalg.norm(vertices - centre, axis=1).max())
        out_dir = Path(item["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        cameras = []
        for index, view in enumerate(item["views"]):
            scene_view = {
                "engine": view.get("engine", settings["engine"]),
                "lighting": view.get("lighting", settings["lighting"]),
                "light_rotation": float(view.get("light_rotation", 0.0)),
            }
            apply_lighting(scene, scene_view["engine"], scene_view["lighting"], scene_view["light_rotation"])
            # Workbench's TEXTURE colour shows image textures, else each material's colour; VERTEX our colours.
            scene.display.shading.color_type = "VERTEX" if look == "vertex_colors" else "TEXTURE"
            camera = place_camera(scene, centre, radius, settings, view, index)
            cameras.append({**camera, **scene_view, "look": look})
            scene.render.filepath = str(out_dir / f"view_{index:02d}.png")
            bpy.ops.render.render(write_still=True)
        (out_dir / "cameras.json").write_text(json.dumps({"id": item["id"], "views": cameras}, indent=1))
    finally:
        remove_objects(objects)


def import_source(scene: bpy.types.Scene, source: dict) -> tuple[list[bpy.types.Object], str]:
    """Import an asset file with its materials; ``([], reason)`` when it cannot be imported.

    ``source``: ``path``, ``format`` (``obj`` or ``gltf``) and ``to_normalized``, the 4×4 that takes
    the file's coordinates read y-up (as both importers read them) to the normalised frame of the
    ``.npz`` — so imported and plain geometry coincide and the same cameras frame either.
    """
    before = set(bpy.data.objects)
    try:
        if source["format"] == "obj":
            bpy.ops.wm.obj_import(filepath=source["path"], forward_axis="NEGATIVE_Z", up_axis="Y")
        else:
            bpy.ops.import_scene.gltf(filepath=source["path"])
    except Exception as error:  # a broken asset falls back to the plain mesh, recorded per view
        remove_objects([obj for obj in bpy.data.objects if obj not in before])
        return [], f"vertex_colors (import failed: {type(error).__name__}: {error})"[:300]
    imported = [obj for obj in bpy.data.objects if obj not in before]
    for obj in [obj for obj in imported if obj.type in ("CAMERA", "LIGHT")]:  # the file's own cameras and lamps
        imported.remove(obj)
        bpy.data.objects.remove(obj, do_unlink=True)
    if not any(obj.type == "MESH" for obj in imported):
        remove_objects(imported)
        return [], "vertex_colors (import found no mesh)"
    to_normalized = Y_UP_TO_BLENDER @ np.asarray(source["to_normalized"], dtype=np.float64)[:3, :3]
    transform = np.eye(4)
    transform[:3, :3] = to_normalized @ Y_UP_TO_BLENDER.T
    transform[:3, 3] = Y_UP_TO_BLENDER @ np.asarray(source["to_normalized"], dtype=np.float64)[:3, 3]
    moved = mathutils.Matrix(transform.tolist())
    for obj in imported:
        if obj.parent is None:
            obj.matrix_world = moved @ obj.matrix_world
    drop_missing_textures(imported)
    return imported, f"importer:{source['format']}"


def drop_missing_textures(objects: list[bpy.types.Object]) -> None:
    """Unlink image textures whose file is missing (Blender would paint them magenta): the material's colour shows."""
    for obj in objects:
        for slot in getattr(obj, "material_slots", []):
            material = slot.material
            if material is None or not material.use_nodes:
                continue
            for node in [node for node in material.node_tree.nodes if node.type == "TEX_IMAGE"]:
                image = node.image
                if image is not None and (
                    image.packed_file is not None or Path(bpy.path.abspath(image.filepath)).is_file()
                ):
                    continue
                for link in list(node.outputs["Color"].links):
                    socket = link.to_socket
                    material.node_tree.links.remove(link)
                    if socket.name == "Base Color":
                        socket.default_value = material.diffuse_color
                material.node_tree.nodes.remove(node)


def remove_objects(objects: list[bpy.types.Object]) -> None:
    """Remove a shape's objects and every mesh, material and image no longer used, before the next shape."""
    for obj in objects:
        bpy.data.objects.remove(obj, do_unlink=True)
    for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.images):
        for block in [block for block in collection if block.users == 0]:
            collection.remove(block)


def build_object(
    scene: bpy.types.Scene, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None
) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("shape")
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    mesh.validate(clean_customdata=False)
    attribute = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    rgba = np.empty((len(vertices), 4))
    rgba[:, :3] = colors[:, :3] if colors is not None else DEFAULT_GREY[:3]
    rgba[:, 3] = 1.0
    attribute.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    obj = bpy.data.objects.new("shape", mesh)
    obj.data.materials.append(vertex_color_material())
    scene.collection.objects.link(obj)
    return obj


def vertex_color_material() -> bpy.types.Material:
    material = bpy.data.materials.new("vertex_color")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = "Col"
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.6
    material.node_tree.links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def place_camera(
    scene: bpy.types.Scene, centre: np.ndarray, radius: float, settings: dict, view: dict, index: int
) -> dict:
    """Aim the camera at ``centre`` from (azimuth, elevation); return its parameters in our y-up frame.

    Azimuth 0 looks at the front (the viewer on +z in the y-up frame), counter-clockwise seen from above.
    A view may carry its own ``fov_deg``, ``distance_scale`` (≥ 1: farther than the framing distance,
    so nothing is cut off) and ``roll`` (degrees about the viewing axis).
    """
    azimuth = math.radians(float(view["azimuth"]))
    elevation = math.radians(float(view["elevation"]))
    fov_deg = float(view.get("fov_deg", settings["fov_deg"]))
    distance = radius * float(settings["margin"]) / math.sin(math.radians(fov_deg) / 2.0)
    distance *= float(view.get("distance_scale", 1.0))
    offset = np.array(
        [math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation), math.sin(elevation)]
    )
    camera = scene.camera
    camera.data.angle = math.radians(fov_deg)
    camera.location = mathutils.Vector(centre + distance * offset)
    aim = mathutils.Vector(-offset).to_track_quat("-Z", "Y")
    roll = mathutils.Quaternion(mathutils.Vector(-offset), math.radians(float(view.get("roll", 0.0))))
    camera.rotation_euler = (roll @ aim).to_euler()
    camera.data.clip_start = max(distance - 2.0 * radius, 1e-3)
    camera.data.clip_end = distance + 2.0 * radius
    bpy.context.view_layer.update()
    to_world = np.array(camera.matrix_world)
    to_world[:3, :] = Y_UP_TO_BLENDER.T @ to_world[:3, :]
    return {
        "index": index,
        "azimuth": float(view["azimuth"]),
        "elevation": float(view["elevation"]),
        "roll": float(view.get("roll", 0.0)),
        "distance": distance,
        "fov_deg": math.degrees(camera.data.angle),
        "resolution": scene.render.resolution_x,
        "target": (Y_UP_TO_BLENDER.T @ centre).tolist(),
        "cam_to_world": to_world.tolist(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv))
