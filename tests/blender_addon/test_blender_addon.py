"""The installed extension inside Blender (bpy 5.0.1 wheel, headless) against the loopback stand-in service:
install/uninstall, the panel's search → thumbnails → import path, a .blend image and a mesh as queries,
and the failures that must leave the scene as it was."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest
from PIL import Image

from .conftest import ADDON_DIR, BLENDER_PYTHON, assert_failures_reported, failure, make_addon
from .standin import TOKEN

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`"),
]

OPERATORS = ["add_selected", "cancel", "import_result", "refresh_models", "report", "search_image", "search_selected"]


def test_the_zip_is_valid_and_holds_only_the_add_on(addon_zip):
    names = sorted(zipfile.ZipFile(addon_zip).namelist())
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    manifest = zipfile.ZipFile(addon_zip).read("blender_manifest.toml").decode()
    assert 'id = "hf_cmah_shape_search"' in manifest and 'network = "Search a shape library service"' in manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('tags = ["3D View", "Import-Export"]', 'tags = ["3D View", "Shape Search"]'), 'invalid tag "Shape Search"'),
        (('network = "Search a shape library service"\n', ""), None),  # still valid: fewer permissions
        (('blender_version_min = "4.2.0"', 'blender_version_min = "4.2"'), "blender_version_min"),
    ],
)
def test_the_build_refuses_what_blender_would(tmp_path, change, message):
    source = tmp_path / "blender_addon"
    shutil.copytree(ADDON_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = source / "blender_manifest.toml"
    old, new = change
    assert old in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(old, new))
    completed = make_addon(tmp_path / "dist", source)
    output = completed.stdout + completed.stderr
    if message is None:
        assert completed.returncode == 0, output
    else:
        assert completed.returncode != 0 and message in output, output
        assert not list((tmp_path / "dist").glob("*.zip"))


def test_install_registers_everything_and_uninstall_removes_it(run_blender):
    seen = run_blender("install")
    assert seen["panel"] and (seen["panel_category"], seen["panel_region"]) == ("Shape Search", "UI")
    assert [name for name in seen["operators"] if name in OPERATORS] == OPERATORS
    assert len(seen["operator_classes"]) == len(OPERATORS)
    assert seen["prefs_url"] == "http://127.0.0.1:7860" and seen["prefs_class"] == "SHAPESEARCH_AP_preferences"
    assert seen["state"] and "/extensions/.user/user_default/hf_cmah_shape_search/thumbnails" in seen["thumbnails_dir"]
    assert seen["after_disable"] == {"panel": False, "classes": [], "state": False}
    assert seen["reenabled"] and seen["installed_after_uninstall"] is False and seen["files_after_uninstall"] is False


def test_search_shows_thumbnails_and_import_places_the_shape(run_blender, standin, query_png):
    seen = run_blender(
        "search_and_import",
        prefs={"service_url": standin.url, "import_scale": 0.5},
        image=str(query_png),
        cursor=[1.0, 2.0, 3.0],
        imports=[1, 1],
        fit_size=3.0,
    )
    assert seen["search_error"] == "" and seen["status"] == "4 results"
    assert [r["shape_id"] for r in seen["results"]] == ["chair/c1", "box/crate", "table t1", "lamp/l 2"]
    assert all(r["thumbnail"] for r in seen["results"]), seen["results"]
    assert seen["models"] == ["cmah-32", "cmah-64"] and seen["model"] == "cmah-32"
    assert "image → shape · cmah-32, 32 bits" in seen["summary"]
    first, second = seen["imports"]
    assert first["error"] == "" and first["status"] == "Imported box/crate" and first["new"] == 1
    root = first["root"]
    assert (root["name"], root["type"], root["collections"]) == ("box/crate", "MESH", ["Shape Search"])
    assert root["selected"] and root["active"] and root["vertices"] == 8
    assert root["scale"] == pytest.approx([0.5] * 3) and root["location"] == pytest.approx([1.0, 2.0, 3.0])
    assert root["dimensions"] == pytest.approx([0.5, 0.25, 1.0], abs=1e-4)  # glTF y-up → Blender z-up
    assert second["root"]["name"] == "box/crate.001"  # a second import is a second object
    fitted = seen["fitted"]["root"]
    assert max(fitted["dimensions"]) == pytest.approx(1.5, abs=1e-4)  # fit to 3 m, then the 0.5 scale
    assert seen["collections"] == ["Collection", "Shape Search"]
    assert len([p for p in standin.paths() if p.endswith("/mesh?model=cmah-32")]) == 1  # cached after the first


def test_blend_images_are_sent_as_png_without_changing_them(run_blender, standin, tmp_path):
    packed = tmp_path / "packed.png"
    Image.new("RGB", (12, 10), (0, 0, 255)).save(packed)
    seen = run_blender("blend_image", prefs={"service_url": standin.url}, colour=[1.0, 0.0, 0.0, 1.0], png=str(packed))
    assert seen["error"] == "" and seen["status"] == "4 results"
    assert seen["images_after"] == seen["images_before"] and seen["image_source"] == "GENERATED"
    painted, unpacked = [r.files[0] for r in standin.requests if r.path == "/api/v1/search"]
    assert painted[:2] == ("image", "reference.png")
    image = Image.open(io.BytesIO(painted[2])).convert("RGB")
    assert image.size == (8, 8) and image.getpixel((3, 3)) == (255, 0, 0)  # the painted, unsaved pixels
    assert seen["packed_error"] == "" and seen["packed_status"] == "4 results" and seen["packed"]
    image = Image.open(io.BytesIO(unpacked[2])).convert("RGB")  # its file is gone: only the packed copy
    assert image.size == (12, 10) and image.getpixel((5, 5)) == (0, 0, 255)


def test_cancel_stops_waiting_and_drops_the_late_answer(run_blender, query_png, dead_urls):
    seen = run_blender(
        "cancel", prefs={"service_url": dead_urls[1], "timeout": 1.0}, image=str(query_png), late_after_s=1.5
    )
    assert seen["search_error"] == "" and seen["busy"] and seen["cancel_error"] == ""
    assert seen["status_after_cancel"] == "Cancelled" and not seen["busy_after_cancel"]
    assert (seen["status_later"], seen["level_later"]) == ("Cancelled", "INFO") and seen["counts_unchanged"]
    assert "did not answer" not in seen["output"]


def test_search_with_the_selected_object_sends_a_glb(run_blender, standin):
    seen = run_blender("shape_search", prefs={"service_url": standin.url})
    assert seen["error"] == "" and seen["status"] == "4 results" and seen["summary"].startswith("shape → shape")
    (search,) = [r for r in standin.requests if r.path == "/api/v1/search"]
    (name, filename, data) = search.files[0]
    assert (name, filename) == ("shape", "query.glb") and data.startswith(b"glTF")
    assert seen["selected_after"] == seen["selected_before"] and seen["active_after"] == "Cube.001"
    assert seen["counts_after"] == seen["counts_before"]


def test_the_panel_draws_every_state_with_real_properties_operators_and_icons(
    run_blender, standin, query_png, dead_urls
):
    seen = run_blender(
        "panel", prefs={"service_url": standin.url}, image=str(query_png), token=TOKEN, silent_url=dead_urls[1]
    )
    assert seen["searched_error"] == ""
    empty, results, busy, error = (seen[state] for state in ("empty", "results", "busy", "error"))
    assert "  label 'Ready' [INFO]" in "\n".join(empty) and "Set the token" in "\n".join(empty)
    add = next(line for line in empty if "shape_search.add_selected" in line)
    assert add.strip() == "operator shape_search.add_selected 'Add Selected Objects to the Library' [ADD] (disabled)"
    text = "\n".join(results)
    assert "label '4 results' [INFO]" in text and "grid 2 columns" in text
    for index, shape_id in enumerate(["chair/c1", "box/crate", "table t1", "lamp/l 2"]):
        assert f"label {shape_id!r}" in text
        assert f"operator shape_search.import_result 'Import' [IMPORT] index={index}" in text
    assert "label 'box · d 1'" in text and "search model = 'cmah-32' in models ['cmah-32', 'cmah-64']" in text
    assert "label '32-bit codes · 4 shapes'" in text
    assert "operator shape_search.cancel '' [CANCEL]" in "\n".join(busy) and "Searching…" in "\n".join(busy)
    start = error.index("  column (alert)")
    labels = [line.strip() for line in error[start : error.index("  box", start)] if "label" in line]
    assert labels[0].startswith("label 'The service at http://127.0.0.1:") and labels[0].endswith("[ERROR]")
    sentence = " ".join(label.split("'")[1] for label in labels)
    assert len(labels) > 1 and "did not answer within 1 s" in sentence and sentence.endswith("check the service.")
    assert "prop service_url = " in "\n".join(seen["preferences"])


def test_failures_are_reported_and_leave_the_scene_unchanged(run_blender, standin, query_png, dead_urls, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a text file named like an image")
    refused, silent = dead_urls
    standin.mesh = b"glTF but not really a GLB file"
    seen = run_blender(
        "errors",
        cases=[
            failure("down", "search_image", refused, image=query_png),
            failure("wrong_url", "search_image", standin.url + "/wrong", image=query_png),
            failure("service_4xx", "search_image", standin.url, image=query_png, model="cmah-8"),
            failure("timeout", "search_image", silent, image=query_png, timeout=0.5),
            failure("not_an_image", "search_image", standin.url, image=not_an_image),
            failure("offline_remote", "search_image", "https://shapes.example.org", image=query_png),
            failure("bad_mesh", "import", standin.url, image=query_png),
            failure("no_token", "add_selected", standin.url, token=""),
            failure("wrong_token", "add_selected", standin.url, token="nope"),
        ],
    )
    assert_failures_reported(
        seen,
        {
            "down": "is not answering (connection refused)",
            "wrong_url": "was not found (HTTP 404)",
            "service_4xx": "There is no model named 'cmah-8'. (HTTP 404, unknown_model)",
            "timeout": "did not answer within 0.5 s",
            "not_an_image": "is not an image file",
            "offline_remote": "Online access is off",
            "bad_mesh": "Importing the mesh of 'chair/c1'",
            "no_token": "needs the service's token",
            "wrong_token": "The token is wrong. (HTTP 403, forbidden)",
        },
    )
    synchronous = {name for name, outcome in seen.items() if isinstance(outcome, dict) and outcome.get("error")}
    assert {"not_an_image", "offline_remote", "no_token"} <= synchronous  # refused by the operator itself
    uploads = [r for r in standin.requests if r.path == "/api/v1/shapes"]
    assert [r.headers["Authorization"] for r in uploads] == ["Bearer nope"]  # no token: nothing was sent
    assert TOKEN not in seen["output"]
