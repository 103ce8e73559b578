"""Every error leaves the API as JSON: `{"error": code, "message": ...}` with a 4xx/5xx status."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from tickq.engine.engine import JobFailed
from tickq.errors import (
    IdempotencyConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    StoreClosedError,
    TickqError,
    ValidationError,
)
from tickq.http.responses import error_response

log = logging.getLogger(__name__)

#: first match wins; a TickqError not listed is a server error
STATUS_BY_ERROR: tuple[tuple[type[TickqError], int], ...] = (
    (ValidationError, 400),
    (JobNotFoundError, 404),
    (IllegalTransitionError, 409),
    (IdempotencyConflictError, 409),
    (JobFailed, 409),
    (StoreClosedError, 503),
)


def status_for(exc: TickqError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TickqError as exc:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed", extra={"event": "http_error", "code": exc.code,
                                               "path": request.path, "status": status})
        field = exc.field if isinstance(exc, ValidationError) else None
        details = {"field": field} if field else {}
        return error_response(status, exc.code, exc.message, **details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        else:
            message = exc.text or exc.reason
        response = error_response(exc.status, _code(exc.reason), message)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error serving a request",
                      extra={"event": "http_unhandled", "path": request.path,
                             "method": request.method})
        return error_response(500, "internal_error", "internal server error")


def _code(reason: str) -> str:
    """'Method Not Allowed' -> 'method_not_allowed'."""
    return "_".join(reason.lower().replace("-", " ").split()) or "http_error"
