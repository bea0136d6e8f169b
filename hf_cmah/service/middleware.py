"""Pure ASGI middleware: a request id and one structured access-log line per request, and the upload limit.

The size limit is enforced on the bytes as they arrive (``Content-Length`` first, then a
running count for chunked bodies), so an oversized upload is refused before it is buffered.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from .errors import error_body

access_logger = logging.getLogger("hf_cmah.service.access")


class AccessLogMiddleware:
    """Gives each HTTP request an id (``X-Request-ID``) and logs ``{"request_id", "method", "route", "status", "ms"}``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex[:12]
        scope["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or scope["path"]
            line = {
                "request_id": request_id,
                "method": scope["method"],
                "route": route,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
            access_logger.info(json.dumps(line))


class UploadLimitMiddleware:
    """Answers 413 (JSON error) to a request body over ``max_bytes``, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        received = 0
        response_started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        limit = self.max_bytes / (1024 * 1024)
        body = json.dumps(
            error_body("too_large", f"request: the body is over the upload limit of {limit:g} MB", "request")
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(BaseException):
    """Raised out of ``receive`` to stop reading a body that crossed the limit: a BaseException, so that no
    handler on the way (FastAPI's "error parsing the body", the 500 handler) turns it into another answer."""


__all__ = ["AccessLogMiddleware", "UploadLimitMiddleware"]
