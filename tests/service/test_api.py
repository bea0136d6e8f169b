"""The JSON API against a real `hf-cmah serve` on 127.0.0.1: searches, assets, bad input, concurrency, limits."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.service.fixtures import BOX_ID, ServiceProcess


def png_bytes(size=(64, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def mesh_bytes(mesh: trimesh.Trimesh, file_type: str = "obj") -> bytes:
    return mesh.export(file_type=file_type).encode() if file_type == "obj" else mesh.export(file_type=file_type)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def search(client, field, filename, data, **form):
    return client.post("/api/v1/search", files={field: (filename, data)}, data={k: str(v) for k, v in form.items()})


def test_an_image_rendered_from_a_library_shape_finds_that_shape_first(client, sample_library):
    response = search(client, "image", "query.png", sample_library.query_image.read_bytes(), k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"][0]["shape_id"] == sample_library.query_id
    assert [hit["rank"] for hit in body["results"]] == [1, 2, 3, 4, 5]
    distances = [hit["distance"] for hit in body["results"]]
    assert distances == sorted(distances)
    assert body["query"]["kind"] == "image" and len(bytes.fromhex(body["query"]["code"])) == body["code_bits"] // 8
    assert body["latency_ms"] > 0 and body["model"] == "index"


def test_a_shape_finds_itself_at_distance_zero_and_its_assets_are_served(client, sample_library):
    response = search(client, "shape", "crate.obj", (sample_library.library_dir / f"{BOX_ID}.obj").read_bytes(), k=3)
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert (first["shape_id"], first["distance"], first["label"]) == (BOX_ID, 0, "box")
    mesh = client.get(first["mesh_url"])
    assert mesh.status_code == 200 and mesh.headers["content-type"] == "model/gltf-binary"
    assert len(trimesh.load(io.BytesIO(mesh.content), file_type="glb", force="mesh").faces) == 12  # the box itself
    thumbnail = client.get(first["thumbnail_url"])
    assert thumbnail.headers["content-type"] == "image/png" and Image.open(io.BytesIO(thumbnail.content)).size[0] > 0
    cached = client.get(first["thumbnail_url"], headers={"If-None-Match": thumbnail.headers["etag"]})
    assert cached.status_code == 304 and not cached.content
    info = client.get(f"/api/v1/shapes/{BOX_ID}").json()
    assert info == {
        "shape_id": BOX_ID,
        "label": "box",
        "model": "index",
        **{k: first[k] for k in ("thumbnail_url", "mesh_url")},
    }


def test_info_health_and_the_openapi_schema(client, sample_library):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/v1/info").json()
    assert info["default_model"] == "index" and info["writes"] is False
    assert info["models"][0] | {"model": None} == {
        "name": "index", "model": None, "code_bits": 32, "shapes": len(sample_library.shape_ids), "rerank": True,
        "writable": False,
    }  # fmt: skip
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/search", "/api/v1/shapes", "/api/v1/shapes/{shape_id}/mesh", "/api/v1/info", "/healthz"} <= set(
        paths
    )


def bomb_png() -> bytes:
    """100 megapixels that compress to a few kilobytes: a decompression bomb."""
    return png_bytes((10_000, 10_000), mode="1")


def nan_mesh() -> bytes:
    return b"v nan nan nan\nv nan 1 0\nv 0 nan 1\nf 1 2 3\n"


BAD_SEARCHES = {
    "not an image": (dict(files={"image": ("notes.png", b"hello, this is text")}), 400, "image"),
    "empty file": (dict(files={"image": ("empty.png", b"")}), 400, "image"),
    "truncated PNG": (dict(files={"image": ("cut.png", png_bytes((256, 256), "RGB")[:200])}), 400, "image"),
    "100 MP bomb": (dict(files={"image": ("bomb.png", bomb_png())}), 400, "image"),
    "NaN mesh": (dict(files={"shape": ("nan.obj", nan_mesh())}), 400, "shape"),
    "not a mesh suffix": (dict(files={"shape": ("model.exe", b"MZ")}), 400, "shape"),
    "k of 0": (dict(files={"image": ("q.png", png_bytes())}, data={"k": "0"}), 422, "k"),
    "k of a million": (dict(files={"image": ("q.png", png_bytes())}, data={"k": "1000000"}), 422, "k"),
    "k not a number": (dict(files={"image": ("q.png", png_bytes())}, data={"k": "ten"}), 422, "k"),
    "no file": (dict(data={"k": "3"}), 400, "image"),
    "unknown model": (dict(files={"image": ("q.png", png_bytes())}, data={"model": "nope"}), 404, "model"),
    "rerank below k": (dict(files={"image": ("q.png", png_bytes())}, data={"k": "5", "rerank": "2"}), 400, "rerank"),
}


@pytest.mark.parametrize("case", list(BAD_SEARCHES))
def test_bad_input_gets_a_4xx_naming_the_field_and_the_server_keeps_serving(client, sample_library, case):
    request, status, field = BAD_SEARCHES[case]
    response = client.post("/api/v1/search", **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"].startswith(f"{field}:") and "Traceback" not in response.text
    good = search(client, "image", "query.png", sample_library.query_image.read_bytes(), k=1)
    assert good.status_code == 200 and good.json()["results"][0]["shape_id"] == sample_library.query_id


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/shapes/..%2F..%2Fetc%2Fpasswd/mesh",
        "/api/v1/shapes/../../etc/passwd/mesh",
        "/api/v1/shapes/%2Fetc%2Fpasswd/thumbnail",
        "/api/v1/shapes//etc/passwd",
        "/api/v1/shapes/unknown-shape",
        "/api/v1/shapes/assets/../../manifest.json/mesh",
    ],
)
def test_no_url_reaches_a_file_outside_the_assets(client, path):
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found" and "root:" not in response.text


def test_twenty_concurrent_searches_are_all_answered_and_never_mixed(client, sample_library):
    queries = [
        (shape_id, (sample_library.library_dir / f"{shape_id}.obj").read_bytes())
        for shape_id in sample_library.shape_ids
    ]
    queries = (queries * 3)[:20]

    def run(query):
        shape_id, data = query
        return shape_id, search(client, "shape", "q.obj", data, k=2)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(run, queries))
    for shape_id, response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["results"][0] == response.json()["results"][0] | {"shape_id": shape_id, "distance": 0}


def test_a_full_queue_answers_503_with_retry_after(sample_library):
    args = ["--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir)]
    with (
        ServiceProcess(*args, "--workers", "1", "--queue-size", "0") as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        data = trimesh.creation.icosphere(subdivisions=5).export(file_type="obj").encode()
        for _ in range(3):  # bounded: three bursts of 12 simultaneous searches
            with ThreadPoolExecutor(12) as pool:
                responses = list(pool.map(lambda _: search(client, "shape", "ball.obj", data, k=1), range(12)))
            statuses = {response.status_code for response in responses}
            assert statuses <= {200, 503}
            if 503 in statuses:
                busy = next(response for response in responses if response.status_code == 503)
                assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "busy"
                assert 200 in statuses
                break
        else:
            pytest.fail("36 simultaneous searches against one worker and no queue never got a 503")


def test_a_body_over_the_upload_limit_gets_413(sample_library):
    args = ["--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir), "--max-upload-mb", "1"]
    with ServiceProcess(*args) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        response = search(client, "image", "big.png", os.urandom(2 * 1024 * 1024))
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"

        def chunks():  # no Content-Length: the limit holds on the streamed bytes too
            yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            for _ in range(40):
                yield os.urandom(64 * 1024)

        streamed = client.post(
            "/api/v1/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
        assert streamed.status_code == 413
        assert search(client, "image", "q.png", sample_library.query_image.read_bytes(), k=1).status_code == 200


def test_startup_refuses_a_model_that_did_not_make_the_index(sample_library, tmp_path):
    import torch

    from hf_cmah import CMAHModel
    from tests.conftest import mini_config

    torch.manual_seed(1)
    CMAHModel(mini_config()).save_pretrained(tmp_path / "other-model")
    command = [sys.executable, "-m", "hf_cmah.cli", "serve", "--model", str(tmp_path / "other-model")]
    result = subprocess.run(
        [*command, "--index", str(sample_library.index_dir), "--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "weights" in result.stderr and "Traceback" not in result.stderr


def test_the_cli_refuses_a_decompression_bomb_in_one_line(sample_library, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)
    command = [sys.executable, "-m", "hf_cmah.cli", "search", str(sample_library.index_dir), "--image", str(bomb)]
    result = subprocess.run(
        [*command, "--model", str(sample_library.model_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "--image:" in result.stderr and "decompression bomb" in result.stderr and "Traceback" not in result.stderr


def test_nan_points_are_refused_by_name(client):
    cloud = io.BytesIO()
    np.save(cloud, np.full((100, 3), np.nan, np.float32))
    response = client.post("/api/v1/search", files={"shape": ("cloud.npy", cloud.getvalue())})
    assert response.status_code == 400 and response.json()["error"]["field"] == "shape"


def test_a_corrupt_or_symlinked_asset_is_a_500_with_a_request_id_and_never_served(sample_library, tmp_path):
    """An asset edited on disk, or swapped for a symlink to another file: the body names only a request id,
    the log has the details under it, nothing of the other file is sent, and the server goes on serving."""
    import json
    import shutil

    from hf_cmah.index import ShapeIndex

    index_dir = tmp_path / "index"
    shutil.copytree(sample_library.index_dir, index_dir)
    metadata = {meta["shape_id"]: meta for meta in ShapeIndex.load(index_dir).metadata.to_pylist()}
    (index_dir / metadata[BOX_ID]["thumbnail"]).write_bytes(b"edited")
    symlinked = index_dir / metadata[sample_library.query_id]["mesh"]
    symlinked.unlink()
    symlinked.symlink_to("/etc/passwd")
    args = ["--model", str(sample_library.model_dir), "--index", str(index_dir)]
    with ServiceProcess(*args) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for path in (f"/api/v1/shapes/{BOX_ID}/thumbnail", f"/api/v1/shapes/{sample_library.query_id}/mesh"):
            response = client.get(path)
            assert response.status_code == 500 and "root:" not in response.text and "Traceback" not in response.text
            request_id = response.headers["x-request-id"]
            assert response.json()["error"] == {
                "code": "internal_error",
                "message": f"internal error; the server log has the details under request id {request_id}",
                "field": None,
            }
            assert f"request {request_id}: unexpected CorruptIndexError" in server.log()
        assert client.get(f"/api/v1/shapes/{BOX_ID}/mesh").status_code == 200
    access = [
        json.loads(line.split("hf_cmah.service.access: ", 1)[1])
        for line in server.log().splitlines()
        if "service.access" in line
    ]
    assert {"route": "/api/v1/shapes/{shape_id:path}/mesh", "status": 500} | {"method": "GET"} in [
        {key: entry[key] for key in ("route", "status", "method")} for entry in access
    ]
