"""JSON responses (orjson) in the shapes every route uses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_body(status: int, code: str, message: str, *,
               details: list[dict[str, Any]] | None = None,
               request_id: str | None = None) -> dict[str, Any]:
    """The one error shape: `{"error": title, "code": machine code, "message": for humans,
    "details": [field errors] (when there are any), "requestId": ...}`.

    `error` is the status's short title ("Bad Request") so that a client can show it as is;
    `code` is what a program branches on ("invalid_priority")."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"error": title, "code": code, "message": message}
    if details:
        body["details"] = details
    body["requestId"] = request_id
    return body


def error_response(status: int, code: str, message: str, *,
                   details: list[dict[str, Any]] | None = None,
                   request_id: str | None = None) -> web.Response:
    return json_response(error_body(status, code, message, details=details,
                                    request_id=request_id), status=status)
