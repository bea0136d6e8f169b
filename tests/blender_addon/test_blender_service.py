"""End to end: the installed extension in Blender (bpy wheel, headless) against a real ``hf-cmah serve`` on
127.0.0.1 with a tiny trained model and a small library with GLBs and rendered thumbnails."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.service.fixtures import BOX_ID, ServiceProcess

from .conftest import BLENDER_PYTHON, assert_failures_reported, failure
from .standin import free_port

pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(not BLENDER_PYTHON.is_file(), reason="no .venv-blender: run `make blender-env`"),
]
TOKEN = "blender-e2e-token"


@pytest.fixture(scope="module")
def library(sample_library):
    return sample_library


@pytest.fixture(scope="module")
def server(library):
    with ServiceProcess("--model", str(library.model_dir), "--index", str(library.index_dir)) as process:
        yield process


def test_image_search_imports_the_top_result(run_blender, server, library):
    seen = run_blender(
        "search_and_import",
        prefs={"service_url": server.url, "import_scale": 0.5},
        image=str(library.query_image),
        cursor=[1.0, -2.0, 0.5],
        imports=[0],
    )
    assert seen["search_error"] == "", seen["output"]
    ids = [result["shape_id"] for result in seen["results"]]
    assert ids[0] == library.query_id and sorted(ids) == sorted(library.shape_ids)  # k = 12 > 9 shapes
    assert all(result["thumbnail"] for result in seen["results"]), seen["results"]
    assert seen["models"] and seen["model"] in seen["models"]
    (imported,) = seen["imports"]
    root = imported["root"]
    assert imported["error"] == "" and imported["status"] == f"Imported {library.query_id}", imported
    assert (root["name"], root["type"], root["collections"]) == (library.query_id, "MESH", ["Shape Search"])
    assert root["vertices"] > 0 and root["selected"] and root["active"]
    assert root["scale"] == pytest.approx([0.5] * 3) and root["location"] == pytest.approx([1.0, -2.0, 0.5])


def test_a_selected_library_mesh_finds_itself(run_blender, server, library):
    """Shape → shape through Blender: the library's own box, imported from its OBJ file, exported by the add-on
    as GLB, comes back first at distance 0 (the export keeps the geometry the service sampled)."""
    obj_file = library.library_dir / f"{BOX_ID}.obj"
    seen = run_blender("shape_search", prefs={"service_url": server.url}, obj_file=str(obj_file))
    assert seen["error"] == "", seen["output"]
    assert (seen["results"][0]["shape_id"], seen["results"][0]["distance"]) == (BOX_ID, 0), seen["results"]
    assert seen["counts_after"] == seen["counts_before"] and seen["selected_after"] == seen["selected_before"]


def test_a_selected_cube_finds_the_box(run_blender, server):
    # The library's box is 1.0 × 0.7 × 0.8 (y-up); a cube scaled to 1.0 × 0.8 × 0.7 in Blender's z-up.
    seen = run_blender("shape_search", prefs={"service_url": server.url}, cube_scale=[0.5, 0.4, 0.35])
    assert seen["error"] == "", seen["output"]
    ids = [result["shape_id"] for result in seen["results"]]
    assert ids[0] == BOX_ID, ids


def test_add_selected_with_the_token_makes_the_object_findable(run_blender, library, tmp_path):
    """The add-on starts the writable service itself (its local service command) and stops it on unregister."""
    index = tmp_path / "index"
    shutil.copytree(library.index_dir, index)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    serve = Path(sys.executable).with_name("hf-cmah")
    command = (
        f"{serve} serve --model {library.model_dir} --index {index} --host 127.0.0.1 --port {port} "
        f"--allow-writes --token-file {token_file}"
    )
    seen = run_blender(
        "add_selected",
        timeout=240,
        prefs={
            "service_url": f"http://127.0.0.1:{port}",
            "token": TOKEN,
            "service_command": command,
            "service_start_timeout": 150.0,
        },
        shape_id="probe/ring",
        label="ring",
        env={"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    assert seen["add_error"] == "" and seen["add_level"] == "INFO", seen["output"]
    assert seen["add_status"] == f"Added probe/ring: the library holds {len(library.shape_ids) + 1} shapes"
    assert seen["search_error"] == "" and seen["results"][0]["shape_id"] == "probe/ring", seen["results"]
    assert seen["results"][0]["distance"] == 0 and seen["results"][0]["label"] == "ring"
    assert seen["service_pid"] is not None
    with socket.socket() as probe:  # the add-on stopped the service it started
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_service_errors_are_reported_and_leave_the_scene_unchanged(run_blender, server, library, dead_urls, tmp_path):
    not_an_image = tmp_path / "scan.jpg"
    not_an_image.write_bytes(b"%PDF-1.4 not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(library.query_image.read_bytes()[:60])
    refused, silent = dead_urls
    image = library.query_image
    seen = run_blender(
        "errors",
        cases=[
            failure("down", "search_image", refused, image=image),
            failure("wrong_url", "search_image", server.url + "/v2", image=image),
            failure("unknown_model", "search_image", server.url, image=image, model="cmah-999"),
            failure("truncated_png", "search_image", server.url, image=truncated),
            failure("timeout", "search_image", silent, image=image, timeout=0.5),
            failure("not_an_image", "search_image", server.url, image=not_an_image),
            failure("writes_disabled", "add_selected", server.url, token=TOKEN),
        ],
    )
    assert_failures_reported(
        seen,
        {
            "down": "is not answering (connection refused)",
            "wrong_url": "(HTTP 404",
            "unknown_model": "cmah-999",
            "truncated_png": "(HTTP 4",
            "timeout": "did not answer within 0.5 s",
            "not_an_image": "is not an image file",
            "writes_disabled": "(HTTP 403, writes_disabled)",
        },
    )
