"""The sidebar's buttons. Each checks what it can at once (reported with ``self.report``), then hands the
network work to a job; ``session.poll`` applies the job's result on the main thread."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import jobs, preferences, props, scene_io, session
from .client import ServiceError, image_content_type


def _start(context: bpy.types.Context, status: str, kind: str, fn, *args, **kwargs) -> set[str]:
    """Submits a job (its arguments are plain values read here, on the main thread) and shows ``status``."""
    session.submit(kind, fn, *args, **kwargs)
    session.set_status(props.get(context), status, "BUSY")
    return {"FINISHED"}


def _search(context: bpy.types.Context, connection: jobs.Connection, query: Path, kind: str, temporary: bool):
    state = props.get(context)
    state.results.clear()
    state.summary = ""
    return _start(
        context,
        "Searching…",
        "search",
        jobs.search,
        connection,
        query,
        kind,
        k=state.k,
        model=state.model,
        rerank=state.rerank,
        thumbnails=session.user_path("thumbnails"),
        with_info=len(state.models) == 0,
        query_is_temporary=temporary,
    )


def _fail(operator: bpy.types.Operator, state, text: str) -> set[str]:
    session.set_status(state, text, "ERROR")
    operator.report({"ERROR"}, text)
    return {"CANCELLED"}


class SHAPESEARCH_OT_search_image(bpy.types.Operator):
    """Find the library's shapes closest to the reference image"""

    bl_idname = "shape_search.search_image"
    bl_label = "Search"

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = props.get(context)
        try:
            connection = session.current().connection(context)
        except ServiceError as error:
            return _fail(self, state, str(error))
        if state.image_source == "FILE":
            if not state.image_path:
                return _fail(self, state, "Choose a reference image file first.")
            query = Path(bpy.path.abspath(state.image_path))
            try:
                image_content_type(query)
            except ServiceError as error:
                return _fail(self, state, str(error))
            temporary = False
        else:
            if state.image is None:
                return _fail(self, state, "Choose a reference image of this .blend file first.")
            folder = scene_io.temporary_folder()
            try:
                query = scene_io.image_to_png(state.image, folder / "reference.png")
            except scene_io.SceneIOError as error:
                shutil.rmtree(folder, ignore_errors=True)
                return _fail(self, state, str(error))
            temporary = True
        return _search(context, connection, query, "image", temporary)


class SHAPESEARCH_OT_search_selected(bpy.types.Operator):
    """Find the library's shapes closest to the active mesh object (exported as GLB)"""

    bl_idname = "shape_search.search_selected"
    bl_label = "Search with Selected Object"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.active_object is not None and context.active_object.type == "MESH"

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = props.get(context)
        obj = context.active_object
        if len(obj.data.vertices) == 0:
            return _fail(self, state, f"The active object {obj.name!r} has no vertices to search with.")
        try:
            connection = session.current().connection(context)
        except ServiceError as error:
            return _fail(self, state, str(error))
        folder = scene_io.temporary_folder()
        try:
            query = scene_io.export_glb(context, [obj], folder / "query.glb")
        except scene_io.SceneIOError as error:
            shutil.rmtree(folder, ignore_errors=True)
            return _fail(self, state, str(error))
        return _search(context, connection, query, "shape", True)


class SHAPESEARCH_OT_import_result(bpy.types.Operator):
    """Import this shape at the 3D cursor, into the "Shape Search" collection"""

    bl_idname = "shape_search.import_result"
    bl_label = "Import"

    index: IntProperty(name="Result", min=0, options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = props.get(context)
        if self.index >= len(state.results):
            return _fail(self, state, f"There is no result {self.index + 1}: search first.")
        result = state.results[self.index]
        if not result.mesh_url:
            return _fail(self, state, f"The service has no mesh for {result.name!r}.")
        try:
            connection = session.current().connection(context)
        except ServiceError as error:
            return _fail(self, state, str(error))
        return _start(
            context,
            f"Downloading {result.name}…",
            "import",
            jobs.fetch_mesh,
            connection,
            result.name,
            result.mesh_url,
            session.user_path("meshes"),
        )


class SHAPESEARCH_OT_add_selected(bpy.types.Operator):
    """Add the selected mesh objects to the service's library (needs the token), named after the objects"""

    bl_idname = "shape_search.add_selected"
    bl_label = "Add Selected Objects to the Library"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return any(obj.type == "MESH" for obj in context.selected_objects)

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = props.get(context)
        if not preferences.get(context).token.strip():
            return _fail(self, state, "Adding shapes needs the service's token: set it in the add-on preferences.")
        try:
            connection = session.current().connection(context)
        except ServiceError as error:
            return _fail(self, state, str(error))
        objects = sorted((obj for obj in context.selected_objects if obj.type == "MESH"), key=lambda obj: obj.name)
        folder = scene_io.temporary_folder()
        files = []
        try:
            for number, obj in enumerate(objects):
                # Object names may hold characters no file system takes; the id travels as a form field.
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", obj.name) or "object"
                files.append(scene_io.export_glb(context, [obj], folder / f"{number:03d}-{stem}.glb"))
        except scene_io.SceneIOError as error:
            shutil.rmtree(folder, ignore_errors=True)
            return _fail(self, state, str(error))
        label = state.add_label.strip()
        return _start(
            context,
            f"Adding {len(objects)} shape(s)…",
            "add",
            jobs.add_shapes,
            connection,
            files,
            shape_ids=[obj.name for obj in objects],
            labels=[label] * len(objects) if label else [],
            model=state.model,
        )


class SHAPESEARCH_OT_refresh_models(bpy.types.Operator):
    """Connect to the service and list its models and code lengths"""

    bl_idname = "shape_search.refresh_models"
    bl_label = "Connect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            connection = session.current().connection(context)
        except ServiceError as error:
            return _fail(self, props.get(context), str(error))
        return _start(context, "Connecting…", "info", jobs.fetch_info, connection)


class SHAPESEARCH_OT_cancel(bpy.types.Operator):
    """Stop waiting for the service; late answers are dropped"""

    bl_idname = "shape_search.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.cancel(context)
        return {"FINISHED"}


class SHAPESEARCH_OT_report(bpy.types.Operator):
    """Shows a job's outcome in the status bar and the Info log (the poller runs outside any operator)"""

    bl_idname = "shape_search.report"
    bl_label = "Shape Search Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=(("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")))
    message: StringProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({self.level}, self.message)
        return {"FINISHED"}


CLASSES = (
    SHAPESEARCH_OT_search_image,
    SHAPESEARCH_OT_search_selected,
    SHAPESEARCH_OT_import_result,
    SHAPESEARCH_OT_add_selected,
    SHAPESEARCH_OT_refresh_models,
    SHAPESEARCH_OT_cancel,
    SHAPESEARCH_OT_report,
)
