"""A loopback stand-in for ``hf-cmah serve`` that speaks the JSON API's contract (docs/SERVICE.md), for the
add-on's client tests: real HTTP and multipart on 127.0.0.1, with knobs for the failures a client meets
(busy, slow, errors, foreign answers). The end-to-end tests run against the real service instead."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import trimesh
from PIL import Image

TOKEN = "s3cret-token"
LIBRARY = [("chair/c1", "chair"), ("box/crate", "box"), ("table t1", "table"), ("lamp/l 2", "lamp")]
MODELS = [{"name": "cmah-32", "code_bits": 32}, {"name": "cmah-64", "code_bits": 64}]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def glb_box(extents: tuple[float, float, float] = (1.0, 2.0, 0.5)) -> bytes:
    """A box as GLB (glTF is y-up: Blender imports ``extents`` as x, z, y)."""
    return trimesh.creation.box(extents=extents).export(file_type="glb")


def png_bytes(size: int = 16, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    fields: dict = field(default_factory=dict)
    files: list = field(default_factory=list)  # (field name, filename, bytes)


class StandIn:
    """The server and its knobs: ``busy`` (503 answers to give), ``delay_s`` (before each answer), ``broken``
    (shape ids whose thumbnail answers 500), ``writes``, ``override`` (fixed answers for a path); ``requests`` records what arrived."""

    def __init__(self, port: int = 0) -> None:
        self.shapes = {shape_id: label for shape_id, label in LIBRARY}
        self.requests: list[Recorded] = []
        self.busy = 0
        self.delay_s = 0.0
        self.broken: set[str] = set()
        self.writes = True
        self.override: dict[str, tuple[int, str, bytes]] = {}  # path → (status, content type, body)
        self.mesh = glb_box()
        self.thumbnail = png_bytes()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self, method: str = "GET") -> list[str]:
        return [request.path for request in self.requests if request.method == method]

    def hit(self, rank: int, shape_id: str, model: str) -> dict:
        quoted = urllib.parse.quote(shape_id, safe="/")
        return {
            "rank": rank,
            "shape_id": shape_id,
            "label": self.shapes[shape_id],
            "distance": rank - 1,
            "score": None,
            "thumbnail_url": f"/api/v1/shapes/{quoted}/thumbnail?model={model}",
            "mesh_url": f"/api/v1/shapes/{quoted}/mesh?model={model}",
        }


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: pytest shows failures, not access logs
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            record = Recorded(method, self.path, dict(self.headers))
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length) if length else b""
            if body and self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                record.fields, record.files = _parse_multipart(self.headers["Content-Type"], body)
            standin.requests.append(record)
            if standin.delay_s:
                time.sleep(standin.delay_s)
            if standin.busy:
                standin.busy -= 1
                return self._error(503, "busy", "The search queue is full.", None, {"Retry-After": "0"})
            if parts.path in standin.override:
                status, content_type, data = standin.override[parts.path]
                return self._bytes(data, content_type, status)
            path = urllib.parse.unquote(parts.path)
            if method == "GET" and path == "/healthz":
                return self._json(200, {"status": "ok"})
            if method == "GET" and path == "/api/v1/info":
                return self._json(200, self._info())
            if method == "POST" and path == "/api/v1/search":
                return self._search(record)
            if path.startswith("/api/v1/shapes"):
                return self._shapes(method, path[len("/api/v1/shapes") :], query, record)
            return self._json(404, {"detail": "Not Found"})  # an unknown route, as FastAPI answers it

        def _info(self) -> dict:
            models = [{**model, "model": "runs/x", "shapes": len(standin.shapes), "rerank": False} for model in MODELS]
            return {
                "version": "0.1.0",
                "default_model": "cmah-32",
                "writes": standin.writes,
                "max_upload_mb": 20,
                "models": models,
            }

        def _search(self, record: Recorded) -> None:
            files = [entry for entry in record.files if entry[0] in ("image", "shape")]
            if len(files) != 1:
                return self._error(422, "invalid_input", "Send exactly one file part, image or shape.", "image")
            try:
                k = int(record.fields.get("k", 10))
            except ValueError:
                k = 0
            if not 1 <= k <= 100:
                return self._error(422, "invalid_input", "k must be an integer from 1 to 100.", "k")
            model = record.fields.get("model") or MODELS[0]["name"]
            if model not in {entry["name"] for entry in MODELS}:
                return self._error(404, "unknown_model", f"There is no model named {model!r}.", "model")
            kind, _, data = files[0]
            if kind == "image" and not data.startswith((b"\x89PNG", b"\xff\xd8\xff")):
                return self._error(400, "invalid_image", "The image field is not a readable image.", "image")
            ids = list(standin.shapes)[:k]
            bits = next(entry["code_bits"] for entry in MODELS if entry["name"] == model)
            results = [standin.hit(rank, shape_id, model) for rank, shape_id in enumerate(ids, 1)]
            self._json(
                200,
                {
                    "model": model,
                    "code_bits": bits,
                    "query": {"kind": kind, "code": "00" * (bits // 8)},
                    "latency_ms": 1.5,
                    "results": results,
                },
            )

        def _shapes(self, method: str, rest: str, query: dict, record: Recorded) -> None:
            model = query.get("model", MODELS[0]["name"])
            if method == "POST" and rest == "":
                return self._add(record)
            for suffix in ("/thumbnail", "/mesh", ""):
                if rest.endswith(suffix):
                    shape_id = rest[1 : len(rest) - len(suffix)]
                    break
            if shape_id not in standin.shapes:
                return self._error(404, "not_found", f"There is no shape {shape_id!r}.", "shape_id")
            if method == "DELETE":
                if self._refused_write(record):
                    return None
                del standin.shapes[shape_id]
                return self._json(200, {"model": model, "deleted": shape_id, "count": len(standin.shapes)})
            if suffix == "/thumbnail":
                if shape_id in standin.broken:
                    return self._error(500, "internal", "Thumbnail failed (request id 1).", None)
                return self._bytes(standin.thumbnail, "image/png")
            if suffix == "/mesh":
                return self._bytes(standin.mesh, "model/gltf-binary")
            hit = standin.hit(1, shape_id, model)
            self._json(200, {key: hit[key] for key in ("shape_id", "label", "thumbnail_url", "mesh_url")})

        def _add(self, record: Recorded) -> None:
            if self._refused_write(record):
                return None
            files = [entry for entry in record.files if entry[0] == "files"]
            ids = record.fields.get("shape_ids_list") or [name.rsplit(".", 1)[0] for _, name, _ in files]
            labels = record.fields.get("labels_list") or [""] * len(ids)
            for shape_id in ids:
                if shape_id in standin.shapes:
                    return self._error(409, "conflict", f"A shape {shape_id!r} exists already.", "shape_ids")
            for _, name, data in files:
                if not data.startswith(b"glTF"):
                    return self._error(400, "invalid_shape", f"The file {name!r} is not a GLB.", "files")
            standin.shapes.update(zip(ids, labels))
            self._json(201, {"model": MODELS[0]["name"], "added": ids, "count": len(standin.shapes)})

        def _refused_write(self, record: Recorded) -> bool:
            """Answers 401/403 (and returns True) unless writes are on and the bearer token is right."""
            authorization = record.headers.get("Authorization", "")
            if not standin.writes:
                self._error(403, "writes_disabled", "This server runs without --allow-writes.", None)
            elif not authorization:
                self._error(401, "unauthorized", "The write endpoints need a bearer token.", "Authorization")
            elif authorization != f"Bearer {TOKEN}":
                self._error(403, "forbidden", "The token is wrong.", "Authorization")
            else:
                return False
            return True

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._bytes(json.dumps(payload).encode(), "application/json", status, headers)

        def _error(self, status: int, code: str, message: str, field_name: str | None, headers=None) -> None:
            self._json(status, {"error": {"code": code, "message": message, "field": field_name}}, headers)

        def _bytes(self, data: bytes, content_type: str, status: int = 200, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict, list]:
    """Form fields (repeated ones also as ``<name>_list``) and file parts of a multipart body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict = {}
    files = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if part.get_filename() is not None:
            files.append((name, part.get_filename(), data))
        else:
            value = data.decode()
            fields[name] = value
            fields.setdefault(f"{name}_list", []).append(value)
    return fields, files
