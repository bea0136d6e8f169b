"""What a server serves when it starts: several libraries side by side, a model and library from the Hub cache,
the quickstart's sample library being prepared, and the Space's app.py."""

from __future__ import annotations

import sys

import httpx
import torch
import yaml

from hf_cmah import CMAHModel, CMAHProcessor
from hf_cmah.index import build_index
from hf_cmah.service.process import ServiceProcess
from tests.conftest import REPO_ROOT, mini_config
from tests.loopback_hub import cached_snapshot
from tests.service.fixtures import BOX_ID

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def crate_search(client: httpx.Client, sample_library, **form) -> httpx.Response:
    data = (sample_library.library_dir / f"{BOX_ID}.obj").read_bytes()
    return client.post("/api/v1/search", files={"shape": ("crate.obj", data)}, data={"k": "1", **form})


def test_several_libraries_side_by_side_each_request_names_one(sample_library, tmp_path):
    torch.manual_seed(3)
    model = CMAHModel(mini_config(code_bits=64)).eval()
    model.save_pretrained(tmp_path / "model-64")
    CMAHProcessor.from_model_config(model.config).save_pretrained(tmp_path / "model-64")
    build_index(model, sample_library.library_dir, tmp_path / "index-64", with_assets=True, progress=False)
    config = tmp_path / "libraries.yaml"
    libraries = [
        {"name": "cmah-32", "model": str(sample_library.model_dir), "index": str(sample_library.index_dir)},
        {"name": "cmah-64", "model": str(tmp_path / "model-64"), "index": str(tmp_path / "index-64")},
    ]
    config.write_text(yaml.safe_dump({"libraries": libraries}))
    with ServiceProcess("--config", str(config)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        info = client.get("/api/v1/info").json()
        assert info["default_model"] == "cmah-32"
        assert [(entry["name"], entry["code_bits"]) for entry in info["models"]] == [("cmah-32", 32), ("cmah-64", 64)]
        every = str(len(sample_library.shape_ids))
        default, chosen = (
            crate_search(client, sample_library).json(),
            crate_search(client, sample_library, model="cmah-64", k=every).json(),
        )
        assert (default["model"], len(default["query"]["code"])) == ("cmah-32", 8)
        assert (chosen["model"], len(chosen["query"]["code"])) == ("cmah-64", 16)
        # cmah-64 is untrained: the crate's own file gets the crate's code (distance 0), which other shapes may share
        hits = chosen["results"]
        assert hits[0]["distance"] == 0 and BOX_ID in [hit["shape_id"] for hit in hits if hit["distance"] == 0]
        assert "model=cmah-64" in hits[0]["mesh_url"]
        assert client.get(hits[0]["mesh_url"]).status_code == 200


def test_a_model_and_a_library_from_the_hub_cache_offline(sample_library, tmp_path):
    hub = tmp_path / "home" / "hub"
    cached_snapshot(hub, "model", "studio/cmah-32", sample_library.model_dir, COMMIT)
    cached_snapshot(hub, "dataset", "studio/cmah-32-library", sample_library.index_dir, COMMIT)
    args = ["--model", "studio/cmah-32", "--index", "studio/cmah-32-library", "--allow-writes"]
    env = {"HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "HF_CMAH_TOKEN": "t" * 32}
    with ServiceProcess(*args, env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        info = client.get("/api/v1/info").json()["models"][0]
        assert info | {"shapes": None} == {
            "name": "cmah-32-library", "model": "studio/cmah-32", "code_bits": 32, "shapes": None, "rerank": True,
            "writable": False,
        }  # fmt: skip
        hit = crate_search(client, sample_library).json()["results"][0]
        assert (hit["shape_id"], hit["distance"]) == (BOX_ID, 0) and client.get(hit["thumbnail_url"]).status_code == 200
        write = client.post(
            "/api/v1/shapes",
            files={"files": ("a.obj", (sample_library.library_dir / f"{BOX_ID}.obj").read_bytes())},
            headers={"Authorization": f"Bearer {'t' * 32}"},
        )
        assert write.status_code == 403 and "read-only" in write.json()["error"]["message"]


def test_without_a_library_the_quickstarts_sample_is_prepared_and_said_so(tmp_path):
    """No --model/--index: the page and the API say the sample library is being built (the build itself is the
    quickstart's, tested there); the server is stopped before the build gets far."""
    server = ServiceProcess(cwd=tmp_path, env={"HF_CMAH_MODEL": "", "HF_CMAH_INDEX": ""})
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        info = client.get("/api/v1/info").json()
        assert info["models"] == [] and "building the sample library" in info["status"]
        busy = client.post("/api/v1/search", files={"image": ("q.png", b"\x89PNG")})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "not_ready"
        assert busy.headers["retry-after"] == "5"
        assert client.get("/").status_code == 200


def test_the_spaces_app_serves_the_library_named_by_the_environment(sample_library):
    env = {
        "HF_CMAH_MODEL": str(sample_library.model_dir),
        "HF_CMAH_INDEX": str(sample_library.index_dir),
        "HF_CMAH_HOST": "127.0.0.1",
    }
    space = ServiceProcess(env=env, command=[sys.executable, str(REPO_ROOT / "spaces_demo" / "app.py")])
    with space as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/api/v1/info").json()["models"][0]["model"] == str(sample_library.model_dir)
        assert crate_search(client, sample_library).json()["results"][0]["shape_id"] == BOX_ID
        assert "hf-cmah" in client.get("/").text
