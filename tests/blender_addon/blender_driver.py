"""Runs one add-on scenario inside Blender (the .venv-blender interpreter, bpy as a module) for the tests.

``python blender_driver.py SCENARIO JOB.json``: installs the built zip into the (temporary) HOME with
Blender's own operator, enables it, runs the scenario through the add-on's operators and its poller (timers
never fire in background Blender, so the poller is called here, in a bounded loop), then disables and
uninstalls it. Writes what it saw to ``job["report"]`` as JSON; the pytest side asserts on that.
Standard library and bpy only.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import bpy

PACKAGE_ID = "hf_cmah_shape_search"
MODULE = f"bl_ext.user_default.{PACKAGE_ID}"


def install(zip_path: str) -> None:
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    assert MODULE in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())


def uninstall() -> None:
    bpy.ops.preferences.addon_disable(module=MODULE)
    (repo,) = [repo for repo in bpy.context.preferences.extensions.repos if repo.module == "user_default"]
    result = bpy.ops.extensions.package_uninstall(repo_directory=repo.directory, pkg_id=PACKAGE_ID)
    assert result == {"FINISHED"}, result


def addon(name: str):
    return importlib.import_module(f"{MODULE}.{name}")


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


def state():
    return bpy.context.window_manager.shape_search


def wait(timeout: float = 60.0) -> None:
    """Calls the poller until no job is in flight and the queue is empty (what the timer would do)."""
    session = addon("session")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.poll()
        if not session.busy() and session.current().worker.messages.empty():
            return
        time.sleep(0.02)
    raise TimeoutError(f"the add-on's jobs did not finish within {timeout} s (status: {state().status!r})")


def run(operator: str, **properties) -> str:
    """Runs ``shape_search.<operator>``; returns "" or the error it reported (Blender raises those to Python)."""
    try:
        getattr(bpy.ops.shape_search, operator)(**properties)
    except RuntimeError as error:
        return str(error).strip()
    return ""


def scene_counts() -> dict:
    return {
        "objects": len(bpy.data.objects),
        "collections": len(bpy.data.collections),
        "meshes": len(bpy.data.meshes),
        "scene_objects": len(bpy.context.scene.objects),
        "materials": len(bpy.data.materials),
    }


def results() -> list[dict]:
    previews = addon("session").current()
    return [
        {
            "shape_id": entry.name,
            "label": entry.label,
            "distance": entry.distance,
            "thumbnail": bool(entry.thumbnail_path) and previews.has_preview(entry.thumbnail_path),
            "thumbnail_error": entry.thumbnail_error,
            "mesh_url": entry.mesh_url,
        }
        for entry in state().results
    ]


def describe(obj: bpy.types.Object) -> dict:
    children = list(obj.children_recursive)
    meshes = [o for o in [obj, *children] if o.type == "MESH"]
    return {
        "name": obj.name,
        "type": obj.type,
        "collections": [c.name for c in obj.users_collection],
        "selected": obj.select_get(),
        "active": bpy.context.view_layer.objects.active == obj,
        "scale": list(obj.scale),
        "location": list(obj.location),
        "dimensions": list(obj.dimensions),
        "vertices": sum(len(o.data.vertices) for o in meshes),
        "children_in_collection": all("Shape Search" in [c.name for c in o.users_collection] for o in children),
    }


def configure(job: dict) -> None:
    for key, value in job.get("prefs", {}).items():
        setattr(prefs(), key, value)


def search_image(path: str) -> str:
    error = search_image_no_wait(path)
    wait()
    return error


def import_result(index: int) -> dict:
    before = set(bpy.data.objects)
    error = run("import_result", index=index)
    wait()
    new = [obj for obj in bpy.data.objects if obj not in before]
    roots = [obj for obj in new if obj.parent not in new]
    return {"error": error, "status": state().status, "new": len(new), "root": describe(roots[0]) if roots else None}


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``, which background Blender never creates (no windows): records what a
    ``draw`` asks for and checks it the way Blender would: properties exist on their data, operators and their
    properties exist, icons are Blender icon names."""

    ICONS = frozenset(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, kind: str = "layout") -> None:
        self.kind = kind
        self.items: list = []
        self.enabled = True
        self.alert = False
        self.use_property_split = False

    def _child(self, kind: str) -> RecordingLayout:
        child = RecordingLayout(kind)
        self.items.append(child)
        return child

    def row(self, **options) -> RecordingLayout:
        return self._child("row")

    def column(self, **options) -> RecordingLayout:
        return self._child("column")

    def box(self) -> RecordingLayout:
        return self._child("box")

    def grid_flow(self, **options) -> RecordingLayout:
        return self._child(f"grid {options.get('columns', 0)} columns")

    def _icon(self, icon: str) -> str:
        assert icon in self.ICONS, f"{icon!r} is not a Blender icon"
        return f" [{icon}]" if icon != "NONE" else ""

    def label(self, *, text: str = "", icon: str = "NONE") -> None:
        self.items.append(f"label {text!r}{self._icon(icon)}")

    def prop(self, data, name: str, *, text: str | None = None, expand: bool = False, icon: str = "NONE") -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        value = getattr(data, name)
        self.items.append(f"prop {name} = {value!r}{' (expanded)' if expand else ''}{self._icon(icon)}")

    def prop_search(self, data, name: str, search_data, search_name: str, *, text: str = "", icon: str = "NONE"):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert search_name in search_data.bl_rna.properties, f"no collection {search_name!r} to search"
        choices = [item.name for item in getattr(search_data, search_name)]
        self.items.append(f"search {name} = {getattr(data, name)!r} in {search_name} {choices}{self._icon(icon)}")

    def operator(self, idname: str, *, text: str | None = None, icon: str = "NONE"):
        category, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, category), name).get_rna_type()  # raises KeyError for an unknown operator
        label = rna.name if text is None else text
        line = {"line": f"operator {idname} {label!r}{self._icon(icon)}", "enabled": self.enabled}
        self.items.append(line)

        class Properties:
            def __setattr__(self, key, value):
                assert key in rna.properties, f"{idname} has no property {key!r}"
                line["line"] += f" {key}={value!r}"

        return Properties()

    def template_icon(self, *, icon_value: int, scale: float = 1.0) -> None:
        self.items.append(f"icon {icon_value} ×{scale:g}")

    def lines(self, depth: int = 0) -> list[str]:
        flags = ("" if self.enabled else " (disabled)") + (" (alert)" if self.alert else "")
        out = [f"{'  ' * depth}{self.kind}{flags}"]
        for item in self.items:
            if isinstance(item, RecordingLayout):
                out += item.lines(depth + 1)
            elif isinstance(item, dict):
                out.append(f"{'  ' * (depth + 1)}{item['line']}{'' if item['enabled'] else ' (disabled)'}")
            else:
                out.append(f"{'  ' * (depth + 1)}{item}")
        return out


def draw(draw_function, owner=None) -> list[str]:
    """Runs a panel's or the preferences' ``draw`` against a :class:`RecordingLayout`; returns its lines."""
    layout = RecordingLayout()

    class Drawer:
        def __getattr__(self, name):
            return getattr(owner, name)

    drawer = Drawer()
    drawer.__dict__["layout"] = layout
    draw_function(drawer, bpy.context)
    return layout.lines()


# Scenarios ------------------------------------------------------------------------------------------------


def scenario_install(job: dict) -> dict:
    """Registered parts while enabled; nothing left after disable; enable again (symmetric register)."""
    seen = {
        "panel": hasattr(bpy.types, "SHAPESEARCH_PT_panel"),
        "panel_category": bpy.types.SHAPESEARCH_PT_panel.bl_category,
        "panel_region": bpy.types.SHAPESEARCH_PT_panel.bl_region_type,
        "operators": sorted(name for name in dir(bpy.ops.shape_search) if not name.startswith("_")),
        "operator_classes": sorted(name for name in dir(bpy.types) if "_OT_" in name and name.startswith("SHAPE")),
        "prefs_url": prefs().service_url,
        "prefs_class": type(prefs()).__name__,
        "state": hasattr(bpy.context.window_manager, "shape_search"),
        "thumbnails_dir": bpy.utils.extension_path_user(MODULE, path="thumbnails", create=True),
    }
    bpy.ops.preferences.addon_disable(module=MODULE)
    seen["after_disable"] = {
        "panel": hasattr(bpy.types, "SHAPESEARCH_PT_panel"),
        "classes": sorted(name for name in dir(bpy.types) if name.startswith("SHAPE")),
        "state": hasattr(bpy.types.WindowManager, "shape_search"),
    }
    bpy.ops.preferences.addon_enable(module=MODULE)
    seen["reenabled"] = hasattr(bpy.types, "SHAPESEARCH_PT_panel") and addon("session").current() is not None
    return seen


def scenario_search_and_import(job: dict) -> dict:
    """Image search → thumbnails → import results (scale, fit size, cursor, collection, selection)."""
    configure(job)
    report: dict = {"search_error": search_image(job["image"])}
    report["results"], report["status"], report["summary"] = results(), state().status, state().summary
    report["models"] = [model.name for model in state().models]
    report["model"] = state().model
    bpy.context.scene.cursor.location = job["cursor"]
    report["imports"] = [import_result(index) for index in job["imports"]]
    if "fit_size" in job:
        prefs().import_fit_size = job["fit_size"]
        report["fitted"] = import_result(job["imports"][0])
    report["collections"] = [c.name for c in bpy.context.scene.collection.children]
    return report


def scenario_blend_image(job: dict) -> dict:
    """A painted generated image of the .blend (no file behind it) as the reference: sent as PNG."""
    configure(job)
    image = bpy.data.images.new("painted", 8, 8)
    image.pixels.foreach_set([channel for _ in range(64) for channel in job["colour"]])
    images_before = sorted(i.name for i in bpy.data.images)
    state().image_source = "DATABLOCK"
    state().image = image
    error = run("search_image")
    wait()
    report = {
        "error": error,
        "status": state().status,
        "results": results(),
        "images_before": images_before,
        "images_after": sorted(i.name for i in bpy.data.images),
        "image_source": image.source,
    }
    packed = bpy.data.images.load(job["png"])
    packed.pack()
    Path(job["png"]).unlink()  # only the packed copy is left
    state().image = packed
    report["packed_error"] = run("search_image")
    wait()
    report["packed_status"], report["packed"] = state().status, packed.packed_file is not None
    return report


def scenario_shape_search(job: dict) -> dict:
    """ "Search with selected object": the active mesh goes out as GLB; the selection is left as it was."""
    configure(job)
    if "obj_file" in job:  # a mesh file brought in with Blender's own OBJ importer (y-up → z-up)
        bpy.ops.wm.obj_import(filepath=job["obj_file"])
        query = bpy.context.selected_objects[0]
        bpy.context.view_layer.objects.active = query
    else:
        bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, 0.0, 0.0))
        query = bpy.context.active_object
        query.scale = job.get("cube_scale", (1.0, 1.0, 1.0))
    others = [o for o in bpy.context.scene.objects if o is not query]
    others[0].select_set(True)
    selected_before = sorted(o.name for o in bpy.context.selected_objects)
    counts = scene_counts()
    error = run("search_selected")
    wait()
    return {
        "error": error,
        "status": state().status,
        "summary": state().summary,
        "results": results(),
        "selected_before": selected_before,
        "selected_after": sorted(o.name for o in bpy.context.selected_objects),
        "active_after": bpy.context.view_layer.objects.active.name,
        "counts_before": counts,
        "counts_after": scene_counts(),
    }


def scenario_add_selected(job: dict) -> dict:
    """ "Add selected objects": a distinctive mesh is uploaded (with the token) and then finds itself."""
    configure(job)
    bpy.ops.mesh.primitive_torus_add(major_radius=1.0, minor_radius=0.15)
    torus = bpy.context.active_object
    torus.name = job["shape_id"]
    for obj in bpy.context.scene.objects:
        obj.select_set(obj is torus)
    state().add_label = job["label"]
    report: dict = {"add_error": run("add_selected")}
    wait(job.get("timeout", 120))
    report["add_status"], report["add_level"] = state().status, state().status_level
    report["search_error"] = run("search_selected")
    wait()
    report["results"], report["status"] = results(), state().status
    report["service_pid"] = addon("session").current().service.pid
    return report


def scenario_errors(job: dict) -> dict:
    """Each failure: the error (reported and in the status line) and the scene's counts before and after."""
    configure(job)
    outcomes = {}
    for case in job["cases"]:
        for key, value in case.get("prefs", {}).items():
            setattr(prefs(), key, value)
        state().model = case.get("model", "")
        counts = scene_counts()
        if case["action"] == "search_image":
            error = search_image(case["image"])
        elif case["action"] == "import":
            error = search_image(case["image"]) or import_result(0)["error"]
        elif case["action"] == "add_selected":
            for obj in bpy.context.scene.objects:
                obj.select_set(obj.type == "MESH")
            error = run("add_selected")
            wait()
        outcomes[case["name"]] = {
            "error": error,
            "status": state().status,
            "level": state().status_level,
            "counts_before": counts,
            "counts_after": scene_counts(),
        }
    return outcomes


def scenario_panel(job: dict) -> dict:
    """The panel and the preferences drawn (recorded) before a search, with results, while busy, after an error."""
    configure(job)
    panel = bpy.types.SHAPESEARCH_PT_panel.draw
    report = {"preferences": draw(type(prefs()).draw, prefs()), "empty": draw(panel)}
    prefs().token = job["token"]
    report["searched_error"] = search_image(job["image"])
    report["results"] = draw(panel)
    prefs().service_url, prefs().timeout = job["silent_url"], 1.0
    run("search_image")
    report["busy"] = draw(panel)
    wait()
    report["error"] = draw(panel)
    return report


def scenario_cancel(job: dict) -> dict:
    """Cancel while a search waits: the status says so at once, and the job's late failure is dropped."""
    configure(job)
    counts = scene_counts()
    report: dict = {"search_error": search_image_no_wait(job["image"]), "busy": addon("session").busy()}
    report["cancel_error"] = run("cancel")
    report["status_after_cancel"], report["busy_after_cancel"] = state().status, addon("session").busy()
    time.sleep(job["late_after_s"])  # the request's own timeout has passed: its error is in the queue
    wait()
    report["status_later"], report["level_later"] = state().status, state().status_level
    report["counts_unchanged"] = scene_counts() == counts
    return report


def search_image_no_wait(path: str) -> str:
    state().image_source = "FILE"
    state().image_path = path
    return run("search_image")


def main() -> None:
    scenario, job_path = sys.argv[1], Path(sys.argv[2])
    job = json.loads(job_path.read_text())
    install(job["zip"])
    try:
        report = globals()[f"scenario_{scenario}"](job)
    finally:
        uninstall()
    report["installed_after_uninstall"] = MODULE in bpy.context.preferences.addons
    report["files_after_uninstall"] = Path(bpy.utils.user_resource("EXTENSIONS"), "user_default", PACKAGE_ID).exists()
    Path(job["report"]).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
