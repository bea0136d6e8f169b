"""Render several views of many meshes in one Blender process (runs in Blender's Python).

Imports only ``bpy``, ``mathutils``, ``numpy`` (shipped with Blender) and the standard
library, never ``hf_cmah``: it runs as ``.venv-blender/bin/python render_views.py JOB`` or
``blender --background --factory-startup --python render_views.py -- JOB``.

The job file (written by ``hf_cmah.render.launcher``) is JSON::

    {"settings": {"engine": "cycles", "samples": 16, "resolution": 224, "fov_deg": 40,
                  "margin": 1.05, "lighting": "studio", "device": "auto", "threads": 0,
                  "denoise": false},
     "meshes": [{"id": "m5", "mesh": "m5.npz", "out_dir": "renders/ab12",
                 "views": [{"azimuth": 0.0, "elevation": 30.0}, ...]}],
     "results": "results.jsonl"}

``lighting`` is ``studio`` (the datasets' lights) or ``side`` (one low warm light; see ``CYCLES_LIGHTS``).
Each ``mesh`` is an ``.npz`` with ``vertices`` (V, 3) float32 in a y-up frame, ``faces``
(F, 3) int32 and optionally ``colors`` (V, 3) in 0..1. For each mesh the script writes
``view_00.png`` … (RGBA, transparent background) and ``cameras.json`` into ``out_dir``,
then appends one JSON line ``{"id", "ok", "error"}`` to ``results`` — line by line, so a
crash loses only the mesh being rendered.
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
# Sun lamps per lighting: (name, energy, Euler rotation in degrees, colour), fixed in the world so that
# shading differs between views the way it does between photos. studio: a key light from the upper
# front-left and a weaker fill from the right; side: one low warm sun from the left, hard shadows.
CYCLES_LIGHTS = {
    "studio": (("key", 3.0, (50.0, 10.0, -40.0), WHITE_LIGHT), ("fill", 1.0, (60.0, -20.0, 120.0), WHITE_LIGHT)),
    "side": (("side", 5.0, (65.0, 0.0, -50.0), (1.0, 0.8, 0.6)),),
}


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
    """An empty scene with the camera, lights and render settings shared by every mesh."""
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
    if settings["engine"] == "workbench":
        setup_workbench(scene, settings["lighting"])
    else:
        setup_cycles(scene, settings)
    return scene


def setup_workbench(scene: bpy.types.Scene, lighting: str) -> None:
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "VERTEX"
    shading.show_cavity = False
    if lighting == "side":
        # The studio light fixed in the world and turned a quarter round: lit from one side in every view.
        shading.studio_light = "rim.sl"
        shading.use_world_space_lighting = True
        shading.studiolight_rotate_z = math.radians(90.0)


def setup_cycles(scene: bpy.types.Scene, settings: dict) -> None:
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.samples = int(settings["samples"])
    cycles.use_denoising = bool(settings.get("denoise", False))
    cycles.use_adaptive_sampling = False
    cycles.max_bounces = 4
    cycles.device = "GPU" if settings.get("device", "auto") != "cpu" and enable_gpu() else "CPU"
    world = scene.world
    world.use_nodes = True
    side = settings["lighting"] == "side"
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.15 if side else 0.6
    for name, energy, rotation, colour in CYCLES_LIGHTS["side" if side else "studio"]:
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy = energy
        light.data.color = colour
        light.rotation_euler = [math.radians(angle) for angle in rotation]
        scene.collection.objects.link(light)


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
    """Render all views of one mesh into ``item["out_dir"]`` and record the cameras."""
    data = np.load(item["mesh"])
    vertices = np.asarray(data["vertices"], dtype=np.float64) @ Y_UP_TO_BLENDER.T
    faces = np.asarray(data["faces"], dtype=np.int64)
    colors = np.asarray(data["colors"], dtype=np.float64) if "colors" in data.files else None
    obj = build_object(scene, vertices, faces, colors)
    try:
        # Frame the bounding sphere around the box centre so that every shape fills the image alike.
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
        radius = float(np.linalg.norm(vertices - centre, axis=1).max())
        distance = radius * float(settings["margin"]) / math.sin(math.radians(float(settings["fov_deg"])) / 2.0)
        out_dir = Path(item["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        cameras = []
        for index, view in enumerate(item["views"]):
            cameras.append(place_camera(scene, centre, radius, distance, view, index))
            scene.render.filepath = str(out_dir / f"view_{index:02d}.png")
            bpy.ops.render.render(write_still=True)
        (out_dir / "cameras.json").write_text(json.dumps({"id": item["id"], "views": cameras}, indent=1))
    finally:
        mesh = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.meshes.remove(mesh)
        for material in [m for m in bpy.data.materials if m.users == 0]:
            bpy.data.materials.remove(material)


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
    scene: bpy.types.Scene, centre: np.ndarray, radius: float, distance: float, view: dict, index: int
) -> dict:
    """Aim the camera at ``centre`` from (azimuth, elevation); return its parameters in our y-up frame.

    Azimuth 0 looks at the front (the viewer on +z in the y-up frame), counter-clockwise seen from above.
    """
    azimuth = math.radians(float(view["azimuth"]))
    elevation = math.radians(float(view["elevation"]))
    offset = np.array(
        [math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation), math.sin(elevation)]
    )
    camera = scene.camera
    camera.location = mathutils.Vector(centre + distance * offset)
    camera.rotation_euler = mathutils.Vector(-offset).to_track_quat("-Z", "Y").to_euler()
    camera.data.clip_start = max(distance - 2.0 * radius, 1e-3)
    camera.data.clip_end = distance + 2.0 * radius
    bpy.context.view_layer.update()
    to_world = np.array(camera.matrix_world)
    to_world[:3, :] = Y_UP_TO_BLENDER.T @ to_world[:3, :]
    return {
        "index": index,
        "azimuth": float(view["azimuth"]),
        "elevation": float(view["elevation"]),
        "distance": distance,
        "fov_deg": math.degrees(camera.data.angle),
        "resolution": scene.render.resolution_x,
        "target": (Y_UP_TO_BLENDER.T @ centre).tolist(),
        "cam_to_world": to_world.tolist(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv))
