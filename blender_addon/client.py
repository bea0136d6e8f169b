"""HTTP client of the hf-cmah search service (``hf-cmah serve``): requests, multipart bodies, parsing.

No ``bpy`` here: this module runs on the add-on's worker threads and in plain Python tests. Every
failure becomes a :class:`ServiceError` whose message is a sentence a Blender user can act on.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

API = "/api/v1"
USER_AGENT = "hf-cmah-blender-shape-search/0.1.0"
# A busy service (503 + Retry-After) is retried this many times at most, waiting at most this long each time.
BUSY_RETRIES = 2
BUSY_WAIT_MAX_S = 5.0
# Magic bytes of the image formats the service decodes; anything else is refused before any upload.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
SHAPE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off", ".npy", ".npz")


class ServiceError(Exception):
    """A request that did not give a usable answer; ``str()`` is the sentence to show the user."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field
        self.retry_after = retry_after


@dataclass(frozen=True)
class ModelInfo:
    name: str
    code_bits: int | None
    shapes: int
    rerank: bool


@dataclass(frozen=True)
class ServiceInfo:
    version: str
    default_model: str
    writes: bool
    models: tuple[ModelInfo, ...]


@dataclass(frozen=True)
class SearchHit:
    rank: int
    shape_id: str
    label: str
    distance: int | None
    score: float | None
    thumbnail_url: str | None
    mesh_url: str | None


@dataclass(frozen=True)
class SearchResult:
    model: str
    code_bits: int | None
    query_kind: str
    query_code: str
    latency_ms: float
    hits: tuple[SearchHit, ...]


def parse_base_url(url: str) -> str:
    """The service URL without a trailing slash; refuses what urllib would misread (no scheme, no host)."""
    text = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(
            f"The service URL {url!r} is not an http:// or https:// address with a host "
            "(expected e.g. http://127.0.0.1:7860): fix it in the add-on preferences.",
            code="invalid_url",
            field="service_url",
        )
    if parts.query or parts.fragment:
        raise ServiceError(
            f"The service URL {url!r} has a query or fragment: give only the base address.",
            code="invalid_url",
            field="service_url",
        )
    return text


def is_loopback(url: str) -> bool:
    """True when ``url`` names this computer, the only case Blender allows with online access off."""
    host = urllib.parse.urlsplit(url.strip()).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def image_content_type(path: str | os.PathLike) -> str:
    """The MIME type of an image file, read from its first bytes; refuses anything that is not an image."""
    file = Path(path)
    if not file.is_file():
        raise ServiceError(f"The reference image {str(file)!r} does not exist or is not a file.", code="not_found")
    with file.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise ServiceError(f"The reference image {str(file)!r} is empty.", code="invalid_image", field="image")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for signature, content_type in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return content_type
    raise ServiceError(
        f"The reference image {str(file)!r} is not an image file (PNG, JPEG, WebP, GIF, BMP or TIFF).",
        code="invalid_image",
        field="image",
    )


def check_shape_file(path: str | os.PathLike) -> None:
    """Refuses a query shape the service cannot read, before uploading it."""
    file = Path(path)
    if not file.is_file() or file.stat().st_size == 0:
        raise ServiceError(f"The shape file {str(file)!r} does not exist or is empty.", code="not_found", field="shape")
    if file.suffix.lower() not in SHAPE_SUFFIXES:
        raise ServiceError(
            f"The shape file {str(file)!r} has suffix {file.suffix!r}; the service reads {', '.join(SHAPE_SUFFIXES)}.",
            code="invalid_shape",
            field="shape",
        )


def encode_multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; ``files`` are (field, filename, data, content type)."""
    boundary = f"hf-cmah-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header(name)}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, filename, data, content_type in files:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote_header(name)}"; filename="{_quote_header(filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        chunks += [head.encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quote_header(value: str) -> str:
    """Quotes a header parameter as browsers do (RFC 7578 §4.2), so any file or id name survives the trip."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def shape_path(shape_id: str) -> str:
    """The URL path of a shape: each ``/``-separated segment of the id percent-encoded."""
    return f"{API}/shapes/{urllib.parse.quote(shape_id, safe='/')}"


class ServiceClient:
    """One service at ``base_url``; every call is one bounded HTTP exchange (``timeout`` seconds per socket wait)."""

    def __init__(self, base_url: str, *, token: str = "", timeout: float = 10.0) -> None:
        self.base_url = parse_base_url(base_url)
        self.token = token.strip()
        self.timeout = float(timeout)

    def health(self) -> None:
        """Returns when ``/healthz`` answers ``{"status": "ok"}``; raises otherwise."""
        answer = self._json("GET", "/healthz", action="the health check")
        if answer.get("status") != "ok":
            raise ServiceError(
                f"{self.base_url}/healthz answered {answer!r}, not an hf-cmah service.", code="bad_answer"
            )

    def info(self) -> ServiceInfo:
        answer = self._json("GET", f"{API}/info", action="reading the service's models")
        try:
            models = tuple(
                ModelInfo(
                    name=str(entry["name"]),
                    code_bits=entry.get("code_bits"),
                    shapes=int(entry.get("shapes", 0)),
                    rerank=bool(entry.get("rerank", False)),
                )
                for entry in answer["models"]
            )
            return ServiceInfo(
                version=str(answer.get("version", "")),
                default_model=str(answer.get("default_model") or (models[0].name if models else "")),
                writes=bool(answer.get("writes", False)),
                models=models,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise self._bad_answer(f"{API}/info", answer, error) from error

    def search_image(self, path: str | os.PathLike, *, k: int, model: str = "", rerank: int = 0) -> SearchResult:
        """Image → shape search with an image file (checked to be an image before it is sent)."""
        content_type = image_content_type(path)
        return self._search("image", Path(path), content_type, k=k, model=model, rerank=rerank)

    def search_shape(self, path: str | os.PathLike, *, k: int, model: str = "", rerank: int = 0) -> SearchResult:
        """Shape → shape search with a mesh or point file; the suffix tells the service its format."""
        check_shape_file(path)
        return self._search("shape", Path(path), "application/octet-stream", k=k, model=model, rerank=rerank)

    def add_shapes(
        self, paths: list[Path], *, shape_ids: list[str], labels: list[str] | None = None, model: str = ""
    ) -> dict:
        """Uploads meshes to the library (``POST /api/v1/shapes``, needs the token); the answer names what was added."""
        if not self.token:
            raise ServiceError(
                "Adding shapes needs the service's token: set it in the add-on preferences.",
                code="unauthorized",
                field="token",
            )
        fields = [("shape_ids", shape_id) for shape_id in shape_ids]
        fields += [("labels", label) for label in labels or []]
        if model:
            fields.append(("model", model))
        files = [("files", path.name, path.read_bytes(), "model/gltf-binary") for path in paths]
        body, content_type = encode_multipart(fields, files)
        answer = self._json(
            "POST", f"{API}/shapes", body=body, content_type=content_type, action="adding shapes to the library"
        )
        if not isinstance(answer.get("added"), list):
            raise self._bad_answer(f"{API}/shapes", answer, KeyError("added"))
        return answer

    def download(self, url: str, destination: Path) -> Path:
        """Fetches a service URL (a result's thumbnail or mesh) into ``destination`` atomically."""
        path = self._same_origin_path(url)
        _, _, data = self._request("GET", path, action=f"downloading {path}")
        if not data:
            raise ServiceError(f"{self.base_url}{path} answered an empty file.", code="bad_answer")
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".part-", suffix=destination.suffix)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return destination

    def _search(self, part: str, path: Path, content_type: str, *, k: int, model: str, rerank: int) -> SearchResult:
        fields = [("k", str(int(k))), ("rerank", str(int(rerank)))]
        if model:
            fields.append(("model", model))
        body, multipart_type = encode_multipart(fields, [(part, path.name, path.read_bytes(), content_type)])
        answer = self._json(
            "POST", f"{API}/search", body=body, content_type=multipart_type, action=f"the {part} search"
        )
        try:
            return SearchResult(
                model=str(answer["model"]),
                code_bits=answer.get("code_bits"),
                query_kind=str(answer["query"]["kind"]),
                query_code=str(answer["query"].get("code", "")),
                latency_ms=float(answer.get("latency_ms", 0.0)),
                hits=tuple(
                    SearchHit(
                        rank=int(hit["rank"]),
                        shape_id=str(hit["shape_id"]),
                        label=str(hit.get("label") or ""),
                        distance=hit.get("distance"),
                        score=hit.get("score"),
                        thumbnail_url=hit.get("thumbnail_url"),
                        mesh_url=hit.get("mesh_url"),
                    )
                    for hit in answer["results"]
                ),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise self._bad_answer(f"{API}/search", answer, error) from error

    def _same_origin_path(self, url: str) -> str:
        """The path of a service URL; refuses URLs on other hosts (they would bypass the online-access check)."""
        if url.startswith("/"):
            return url
        if url.startswith(self.base_url + "/"):
            return url[len(self.base_url) :]
        raise ServiceError(
            f"The service sent a link outside {self.base_url}: {url!r}; it is not followed.", code="bad_answer"
        )

    def _json(self, method: str, path: str, *, action: str, body: bytes | None = None, content_type: str = "") -> dict:
        _, headers, data = self._request(method, path, action=action, body=body, content_type=content_type)
        try:
            answer = json.loads(data)
        except ValueError as error:
            raise ServiceError(
                f"{self.base_url}{path} did not answer JSON ({headers.get('Content-Type', 'no content type')}): "
                "is the service URL that of an hf-cmah service?",
                code="bad_answer",
            ) from error
        if not isinstance(answer, dict):
            raise self._bad_answer(path, answer, TypeError("not an object"))
        return answer

    def _request(
        self, method: str, path: str, *, action: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, dict, bytes]:
        """One exchange, retried only on 503 ``busy`` (bounded); every failure raises a :class:`ServiceError`."""
        url = self.base_url + path
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(BUSY_RETRIES + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                failure = self._http_error(error, action, method, path)
                if failure.code != "busy" or attempt == BUSY_RETRIES:
                    raise failure from None
                time.sleep(min(1.0 if failure.retry_after is None else failure.retry_after, BUSY_WAIT_MAX_S))
            except urllib.error.URLError as error:
                raise self._connection_error(error.reason, action) from None
            except (OSError, http.client.HTTPException) as error:
                raise self._connection_error(error, action) from None
        raise AssertionError("unreachable: the loop returns or raises")

    def _http_error(self, error: urllib.error.HTTPError, action: str, method: str, path: str) -> ServiceError:
        data = error.read()
        retry_after = _seconds(error.headers.get("Retry-After"))
        try:
            detail = json.loads(data)["error"]
            code, message, field = str(detail["code"]), str(detail["message"]), detail.get("field")
        except (ValueError, KeyError, TypeError):
            if error.code == 404:
                return ServiceError(
                    f"{self.base_url}{path} was not found (HTTP 404) during {action}: "
                    "is the service URL that of an hf-cmah service?",
                    code="not_found",
                    status=404,
                )
            return ServiceError(
                f"The service answered HTTP {error.code} {error.reason} to {method} {path} during {action}.",
                code="http_error",
                status=error.code,
                retry_after=retry_after,
            )
        if code == "busy":
            message += f" (retry after {retry_after:g} s)" if retry_after else ""
        return ServiceError(
            f"The service refused {action}: {message} (HTTP {error.code}, {code})",
            code=code,
            status=error.code,
            field=field,
            retry_after=retry_after,
        )

    def _connection_error(self, reason: object, action: str) -> ServiceError:
        if isinstance(reason, TimeoutError):
            return ServiceError(
                f"The service at {self.base_url} did not answer within {self.timeout:g} s during {action}: "
                "it may be busy or hung; raise the timeout in the preferences or check the service.",
                code="timeout",
            )
        if isinstance(reason, ConnectionRefusedError):
            return ServiceError(
                f"The service at {self.base_url} is not answering (connection refused) during {action}: "
                "start it with `hf-cmah serve --model MODEL --index INDEX` or check the service URL.",
                code="unreachable",
            )
        if isinstance(reason, socket.gaierror):
            return ServiceError(
                f"The host of {self.base_url} cannot be resolved ({reason}): check the service URL.", code="unreachable"
            )
        return ServiceError(
            f"The service at {self.base_url} could not be reached during {action}: {reason}.", code="unreachable"
        )

    def _bad_answer(self, path: str, answer: object, error: Exception) -> ServiceError:
        return ServiceError(
            f"{self.base_url}{path} answered JSON without the expected fields ({error!r}): "
            f"is it an hf-cmah service of a compatible version? Got {str(answer)[:200]}",
            code="bad_answer",
        )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
