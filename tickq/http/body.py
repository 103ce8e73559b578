"""Reading request bodies safely, and turning validation failures into field errors.

A body is refused (and nothing is enqueued) when it is too large (413), not JSON, nested
deeper than `MAX_JSON_DEPTH`, or uses a key that starts with `__` or contains "prototype"
anywhere (400). The spec's service quietly dropped such keys and rewrote strings it did not
like (script tags, SQL words); tickq refuses instead and never changes what it stores: the data
a processor sees is byte for byte what the caller sent, after the job type's own validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
import pydantic
from aiohttp import web

from tickq.errors import PayloadTooLargeError, ValidationError

#: objects and arrays nested deeper than this are refused
MAX_JSON_DEPTH = 32

M = TypeVar("M", bound=pydantic.BaseModel)

#: what JSON nests: exact types, as orjson makes them
_CONTAINERS = (dict, list)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The request's JSON body, checked; None for an empty body when `optional`."""
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"the request body is {length} bytes; the limit is {limit}")
    raw = await request.read()  # aiohttp enforces the limit on chunked bodies (413)
    if not raw or raw.isspace():  # not `raw.strip()`: that copies the whole body
        if optional:
            return None
        raise ValidationError("the request body is empty; send a JSON object",
                              code="invalid_json")
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise web.HTTPUnsupportedMediaType(
            text=f"the body must be JSON (Content-Type: application/json), got "
                 f"{request.content_type}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson has its own (much higher) nesting limit; past it, the answer is the same.
        if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
            raise _too_deep() from None
        raise ValidationError(f"the request body is not valid JSON: {exc}",
                              code="invalid_json") from None
    check_structure(value, raw)
    return value


def check_structure(value: Any, raw: bytes | None = None,
                    max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse documents nested deeper than `max_depth` or carrying a dangerous key.

    Iterative, so a hostile document cannot exhaust the stack before it is refused. Given the
    `raw` body, keys are only inspected one by one when the bytes could hold a dangerous one (a
    `"__`, a `prototype` in any case, or a `\\u` escape that could spell either): an ordinary
    batch of a hundred jobs then costs a depth walk over its containers and nothing more."""
    if raw is None or b'"__' in raw or b"\\u" in raw or b"prototype" in raw.lower():
        _check_keys(value, max_depth)
        return
    # Level by level: one comprehension per level of nesting, not one Python step per node.
    level = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > max_depth:
            raise _too_deep()
        level = [child for node in level
                 for child in (node.values() if type(node) is dict else node)
                 if type(child) in _CONTAINERS]
        depth += 1


def _check_keys(value: Any, max_depth: int) -> None:
    """The full walk: depth, and every key with the path to it for the error."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                raise _too_deep()
            for key, child in node.items():
                if key.startswith("__") or "prototype" in key.lower():
                    where = f"{path}.{key}" if path else key
                    raise ValidationError(
                        f"the key {key!r} is not allowed (keys may not start with '__' or "
                        "contain 'prototype')", code="forbidden_key", field=where)
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            if depth > max_depth:
                raise _too_deep()
            for i, child in enumerate(node):
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1, f"{path}[{i}]"))


def _too_deep() -> ValidationError:
    return ValidationError(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels",
                           code="json_too_deep")


def parse(model: type[M], value: Any, *, what: str = "the request body",
          strict: bool = True) -> M:
    """`value` as `model`, or one `ValidationError` listing every problem as a field error.
    JSON bodies parse strictly (`"5"` is not a number); query strings, all text, do not."""
    try:
        return model.model_validate(value, strict=strict)
    except pydantic.ValidationError as exc:
        details = field_errors(exc)
        raise ValidationError(f"{what} is invalid: {summary(details)}", details=details,
                              field=details[0]["field"] if len(details) == 1 else None
                              ) from None


def field_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic's errors as `{"field", "message", "code"}`, without echoing the input."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        where = field_path(err["loc"], prefix)
        out.append({"field": where or prefix or "body", "message": err["msg"],
                    "code": err["type"]})
    return out


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """('jobs', 0, 'options', 'priority') -> 'jobs[0].options.priority'."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def summary(details: Sequence[dict[str, str]]) -> str:
    first = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    more = len(details) - 3
    return first + (f" (and {more} more)" if more > 0 else "")
