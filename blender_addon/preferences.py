"""The add-on's preferences: where the service is, the token, timeouts, import size, a local service command."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, StringProperty


class SHAPESEARCH_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    service_url: StringProperty(
        name="Service URL",
        description="Base address of the hf-cmah search service (hf-cmah serve)",
        default="http://127.0.0.1:7860",
    )
    token: StringProperty(
        name="Token",
        description="The service's write token (HF_CMAH_TOKEN or --token-file): needed to add shapes to the library",
        default="",
        subtype="PASSWORD",
    )
    timeout: FloatProperty(
        name="Timeout",
        description="Seconds to wait for each answer of the service",
        default=30.0,
        min=0.5,
        max=600.0,
        subtype="TIME_ABSOLUTE",
        unit="TIME_ABSOLUTE",
    )
    import_scale: FloatProperty(
        name="Import Scale",
        description="Scale factor given to an imported shape (after fitting, when Fit Size is set)",
        default=1.0,
        min=0.0001,
        soft_max=100.0,
    )
    import_fit_size: FloatProperty(
        name="Fit Size",
        description="When above 0, an imported shape is first scaled so that its largest dimension is this long",
        default=0.0,
        min=0.0,
        soft_max=100.0,
        subtype="DISTANCE",
        unit="LENGTH",
    )
    service_command: StringProperty(
        name="Local Service Command",
        description=(
            "Command line that starts the service on this computer when it is not answering, e.g. "
            "hf-cmah serve --model MODEL --index INDEX --port 7860 (run without a shell; stopped with the add-on)"
        ),
        default="",
    )
    service_start_timeout: FloatProperty(
        name="Start Timeout",
        description="Seconds to wait for a service started with the command above to answer",
        default=90.0,
        min=1.0,
        max=600.0,
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        column = layout.column(heading="Service")
        column.prop(self, "service_url")
        column.prop(self, "token")
        column.prop(self, "timeout")
        column = layout.column(heading="Import")
        column.prop(self, "import_scale")
        column.prop(self, "import_fit_size")
        column = layout.column(heading="Local Service")
        column.prop(self, "service_command", text="Command")
        column.prop(self, "service_start_timeout")
        if not bpy.app.online_access:
            layout.label(text="Online access is off: only a service on this computer can be used.", icon="INFO")


def get(context: bpy.types.Context) -> SHAPESEARCH_AP_preferences:
    return context.preferences.addons[__package__].preferences


CLASSES = (SHAPESEARCH_AP_preferences,)
