"""JSON responses (orjson) in the shapes every route uses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    """The one error shape: `{"error": code, "message": ..., **details}`."""
    return json_response({"error": code, "message": message, **details}, status=status)
