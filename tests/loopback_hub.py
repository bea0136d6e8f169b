"""The Hub without a network: a loopback stand-in for the endpoints `create_repo`, `list_repo_files` and commits
use, :func:`cached_snapshot`, which lays a folder out as a repo in an offline Hub cache, and
:func:`cache_pushed_repos`, which does so for every repo pushed to the loopback Hub (a push, then a load by id)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LoopbackHub(BaseHTTPRequestHandler):
    """Keeps each repo's files in memory (``repos[repo_id][path] = bytes``) and its type (``repo_types[repo_id]``:
    model, dataset or space); files arrive inline (base64 NDJSON)."""

    repos: dict[str, dict[str, bytes]] = {}
    repo_types: dict[str, str] = {}
    validated: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, payload: dict | list) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 6 and parts[0] == "api" and parts[4] == "tree":  # /api/{type}s/{org}/{name}/tree/{revision}
            files = self.repos.get("/".join(parts[2:4]), {})
            return self._reply(
                [{"type": "file", "path": path, "size": len(data), "oid": "0" * 40} for path, data in files.items()]
            )
        self.send_error(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["api", "repos", "create"]:
            request = json.loads(body)
            repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
            self.repos.setdefault(repo_id, {})
            return self._reply({"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
        if parts[:2] == ["api", "validate-yaml"]:  # the client checks a README's metadata before committing it
            self.validated.append(json.loads(body)["content"])
            return self._reply({})
        repo_id = "/".join(parts[2:4])
        if parts[4] == "preupload":
            files = json.loads(body)["files"]
            return self._reply(
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if parts[4] == "commit":  # /api/{type}s/{org}/{name}/commit/{revision}
            self.repo_types[repo_id] = parts[1].removesuffix("s")
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.repos[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    del self.repos[repo_id][item["value"]["path"]]
            return self._reply(
                {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{'a' * 40}", "commitOid": "a" * 40}
            )
        self.send_error(404)


@contextlib.contextmanager
def loopback_hub() -> Iterator[str]:
    """Serve :class:`LoopbackHub` on a free local port while the block runs; yields its endpoint URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoopbackHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def cached_snapshot(hub_dir: Path, repo_type: str, repo_id: str, folder: Path, commit: str) -> Path:
    """Copy ``folder`` into ``hub_dir`` (``$HF_HOME/hub``) as ``repo_id``'s snapshot at ``commit``, with refs/main,
    the layout huggingface_hub reads with ``HF_HUB_OFFLINE=1``; returns the snapshot folder."""
    repo = Path(hub_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def materialise(files: dict[str, bytes], folder: Path) -> Path:
    """Write a repo's files out as the folder a snapshot download would give."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def cache_pushed_repos(hub_dir: Path) -> None:
    """Lay every repo :class:`LoopbackHub` holds out in ``hub_dir`` as its newest offline-cache snapshot (named by a
    hash of its files), so that loads with ``HF_HUB_OFFLINE=1`` read back what a push wrote."""
    for repo_id, files in LoopbackHub.repos.items():
        digest = hashlib.sha1()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        repo_type = LoopbackHub.repo_types.get(repo_id, "model")
        snapshot = Path(hub_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots" / digest.hexdigest()
        if files and not snapshot.is_dir():
            with tempfile.TemporaryDirectory() as folder:
                cached_snapshot(hub_dir, repo_type, repo_id, materialise(files, Path(folder)), digest.hexdigest())
