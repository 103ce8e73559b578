"""Cross-cutting HTTP behaviour: request ids, JSON errors and security headers.

Middleware order (outermost first, see `make_app`): `request_context` gives the request its id
before anything can log or fail; `json_errors` turns every exception below it into the one error
shape; authentication runs inside both, so a 401 is an ordinary JSON error with a request id.
Headers are added in `on_response_prepare`, the one hook every response passes through, including
errors aiohttp raises itself and streamed responses.
"""

from __future__ import annotations

import logging
import os
import random
import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tickq.engine.engine import JobFailed
from tickq.errors import (
    AuthenticationError,
    IdempotencyConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StoreClosedError,
    TickqError,
    ValidationError,
)
from tickq.http.keys import REQUEST_ID
from tickq.http.responses import error_response
from tickq.logs import request_id as request_id_var

log = logging.getLogger(__name__)

#: first match wins; a TickqError not listed is a server error
STATUS_BY_ERROR: tuple[tuple[type[TickqError], int], ...] = (
    (ValidationError, 400),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (JobNotFoundError, 404),
    (NotFoundError, 404),
    (IllegalTransitionError, 409),
    (IdempotencyConflictError, 409),
    (JobFailed, 409),
    (PayloadTooLargeError, 413),
    (StoreClosedError, 503),
)

#: codes for the HTTP errors aiohttp raises itself, where its reason phrase is not the best name
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

#: a caller's X-Request-ID is kept only if it is this short and made of these characters
MAX_REQUEST_ID = 128
_REQUEST_ID_JUNK = re.compile(r"[^A-Za-z0-9._:@/+=-]")

#: on every response
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: on JSON responses: nothing in them is meant to be rendered, framed, cached or executed
JSON_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
}


def status_for(exc: TickqError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


#: request ids need to be unique, not secret: one generator seeded from the OS, no syscall each
_ids = random.Random(os.urandom(32))

def clean_request_id(raw: str | None) -> str:
    """The caller's request id with anything that could forge a log line or a header removed,
    bounded in length; a fresh one when nothing usable is left."""
    if raw:
        cleaned = _REQUEST_ID_JUNK.sub("", raw)[:MAX_REQUEST_ID]
        if cleaned:
            return cleaned
    return f"{_ids.getrandbits(128):032x}"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id and put that id on every log line written while serving it."""
    rid = clean_request_id(request.headers.get("X-Request-ID"))
    request[REQUEST_ID] = rid
    token = request_id_var.set(rid)
    try:
        return await handler(request)
    finally:
        # One task serves every request of a keep-alive connection: do not leak the id.
        request_id_var.reset(token)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except TickqError as exc:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed", extra={"event": "http_error", "code": exc.code,
                                               "path": request.path, "status": status})
        response = error_response(status, exc.code, exc.message, details=_details(exc),
                                  request_id=rid)
        if status == 401:
            # RFC 6750: no error attribute when the request carried no credentials at all.
            challenge = 'Bearer realm="tickq"'
            if exc.code != "missing_token":
                challenge += ', error="invalid_token"'
            response.headers["WWW-Authenticate"] = challenge
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        elif exc.status == 413:
            message = f"the request body exceeds the limit of {request.client_max_size} bytes"
        else:
            message = exc.text or exc.reason
        code = _HTTP_CODES.get(exc.status) or _code(exc.reason)
        response = error_response(exc.status, code, message, request_id=rid)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error serving a request",
                      extra={"event": "http_unhandled", "path": request.path,
                             "method": request.method})
        return error_response(500, "internal_error", "internal server error", request_id=rid)


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: the request id and the security headers on every response."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers["X-Request-ID"] = rid
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "application/json":
        for name, value in JSON_HEADERS.items():
            response.headers.setdefault(name, value)


def _details(exc: TickqError) -> list[dict[str, Any]] | None:
    if not isinstance(exc, ValidationError):
        return None
    if exc.details:
        return list(exc.details)
    if exc.field:
        return [{"field": exc.field, "message": exc.message, "code": exc.code}]
    return None


def _code(reason: str) -> str:
    """'Method Not Allowed' -> 'method_not_allowed'."""
    return "_".join(reason.lower().replace("-", " ").split()) or "http_error"
