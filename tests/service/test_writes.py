"""Library writes: refused without the token (nothing changes), with it a new mesh is found next, and a
server killed with SIGKILL mid-write leaves an index on disk that loads."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time

import httpx
import pytest
import trimesh

from hf_cmah.index import ShapeIndex
from tests.service.fixtures import ServiceProcess

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def writable_library(sample_library, tmp_path):
    """A copy of the sample index that this test may change."""
    index_dir = tmp_path / "index"
    shutil.copytree(sample_library.index_dir, index_dir)
    return index_dir


def writable_server(sample_library, index_dir, *extra):
    args = ["--model", str(sample_library.model_dir), "--index", str(index_dir), "--allow-writes", *extra]
    return ServiceProcess(*args, env={"HF_CMAH_TOKEN": TOKEN})


def torus_obj() -> bytes:
    return trimesh.creation.torus(major_radius=1.0, minor_radius=0.3).export(file_type="obj").encode()


def test_writes_without_the_token_are_refused_and_change_nothing(sample_library, writable_library):
    before = sorted(path.name for path in writable_library.rglob("*"))
    with writable_server(sample_library, writable_library) as server, httpx.Client(base_url=server.url) as client:
        files = {"files": ("torus.obj", torus_obj())}
        missing = client.post("/api/v1/shapes", files=files)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/api/v1/shapes", files=files, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        assert client.delete("/api/v1/shapes/box/crate").status_code == 401
        assert client.get("/api/v1/info").json()["models"][0]["shapes"] == len(sample_library.shape_ids)
    assert sorted(path.name for path in writable_library.rglob("*")) == before


def test_a_read_only_server_refuses_writes_even_with_a_token(server):
    response = httpx.post(
        f"{server.url}/api/v1/shapes",
        files={"files": ("torus.obj", torus_obj())},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "writes_disabled"


def test_an_added_mesh_is_found_by_the_next_search_and_saved(sample_library, writable_library):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        writable_server(sample_library, writable_library) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        added = client.post(
            "/api/v1/shapes", files={"files": ("torus.obj", torus_obj())}, data={"labels": "ring"}, headers=auth
        )
        assert added.status_code == 201, added.text
        assert added.json() == {"model": "index", "added": ["torus"], "count": len(sample_library.shape_ids) + 1}
        again = client.post("/api/v1/shapes", files={"files": ("torus.obj", torus_obj())}, headers=auth)
        assert again.status_code == 409 and again.json()["error"]["field"] == "shape_ids"
        bad = client.post("/api/v1/shapes", files={"files": ("broken.obj", b"not a mesh")}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "files[0]"
        hit = client.post("/api/v1/search", files={"shape": ("q.obj", torus_obj())}, data={"k": "1"}).json()["results"][
            0
        ]
        assert (hit["shape_id"], hit["distance"], hit["label"]) == ("torus", 0, "ring")
        assert client.get(hit["mesh_url"]).status_code == 200
        thumbnail = client.get(hit["thumbnail_url"])  # rendered like the library's own thumbnails
        assert thumbnail.status_code == 200 and thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n"
        on_disk = ShapeIndex.load(writable_library)
        assert "torus" in on_disk.shape_ids and len(on_disk) == len(sample_library.shape_ids) + 1
        deleted = client.delete("/api/v1/shapes/torus", headers=auth)
        assert deleted.json() == {"model": "index", "deleted": "torus", "count": len(sample_library.shape_ids)}
        assert client.delete("/api/v1/shapes/torus", headers=auth).status_code == 404
    assert "torus" not in ShapeIndex.load(writable_library).shape_ids


@pytest.mark.slow
def test_a_server_killed_mid_write_leaves_a_loadable_index(sample_library, writable_library):
    """SIGKILL while a batch of meshes is being added, at three moments: the folder always loads, old or new."""
    batch = [("files", (f"ring{number}.obj", torus_obj())) for number in range(24)]
    counts = set()
    for delay in (0.3, 1.0, 2.0):
        with writable_server(sample_library, writable_library) as server:
            post = threading.Thread(
                target=lambda: _quietly(
                    lambda: httpx.post(
                        f"{server.url}/api/v1/shapes",
                        files=batch,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=60,
                    )
                )
            )
            post.start()
            time.sleep(delay)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            post.join(timeout=60)
        index = ShapeIndex.load(writable_library)  # verified: manifest, checksums, counts
        counts.add(len(index))
        if len(index) > len(sample_library.shape_ids):  # that write completed: take the rings out for the next try
            index.remove([shape_id for shape_id in index.shape_ids if shape_id.startswith("ring")])
            index.save(writable_library)
    assert counts <= {len(sample_library.shape_ids), len(sample_library.shape_ids) + 24}


def _quietly(call) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server died under the request: expected here
        call()
