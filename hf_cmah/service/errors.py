"""The service's JSON errors: ``{"error": {"code", "message", "field"}}`` for every failure, never a stack trace.

hf_cmah's own errors (contract 6) map to 4xx here; the service adds the HTTP-only cases
(not found, auth, busy, too large). An unexpected exception is a 500 whose body carries only
the request id; the traceback goes to the log under that id.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import CorruptIndexError, HFCMAHError, IncompatibleIndexError, InvalidInputError

logger = logging.getLogger("hf_cmah.service")
FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?):")


class ServiceError(HFCMAHError):
    """An error with its HTTP status and a stable snake_case code."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.headers = headers


class NotFoundError(ServiceError):
    status, code = 404, "not_found"


class UnauthorizedError(ServiceError):
    status, code = 401, "unauthorized"


class ForbiddenError(ServiceError):
    status, code = 403, "forbidden"


class WritesDisabledError(ServiceError):
    status, code = 403, "writes_disabled"


class ConflictError(ServiceError):
    status, code = 409, "conflict"


class PayloadTooLargeError(ServiceError):
    status, code = 413, "too_large"


class BusyError(ServiceError):
    status, code = 503, "busy"


class NotReadyError(ServiceError):
    status, code = 503, "not_ready"


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(error: Exception) -> JSONResponse:
    """The JSON response of an hf_cmah error (service errors keep their status; input errors are 400)."""
    if isinstance(error, ServiceError):
        status, code, field, headers = error.status, error.code, error.field, error.headers
    elif isinstance(error, IncompatibleIndexError):
        status, code, field, headers = 409, "incompatible", None, None
    else:
        status, code, field, headers = 400, "invalid_input", None, None
    message = str(error)
    if field is None and (match := FIELD_PREFIX.match(message)):
        field = match.group(1)
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the JSON error shape: hf_cmah errors, validation, HTTP errors, anything else (500)."""

    @app.exception_handler(ServiceError)
    @app.exception_handler(InvalidInputError)
    @app.exception_handler(IncompatibleIndexError)
    async def on_hf_cmah_error(request: Request, error: HFCMAHError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        field = location[0] if location else None
        message = f"{field or 'request'}: {first.get('msg', 'invalid value')}"
        if "input" in first and not isinstance(first["input"], (bytes, dict, list)) and first["input"] is not None:
            message += f" (got {str(first['input'])[:80]!r})"
        return JSONResponse(error_body("invalid_input", message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(CorruptIndexError)
    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        request_id = request.scope.get("request_id", "-")
        logger.exception("request %s: unexpected %s", request_id, type(error).__name__)
        message = f"internal error; the server log has the details under request id {request_id}"
        return JSONResponse(error_body("internal_error", message), status_code=500)


__all__ = [
    "BusyError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "ServiceError",
    "UnauthorizedError",
    "WritesDisabledError",
    "error_body",
    "error_response",
    "install_error_handlers",
]
