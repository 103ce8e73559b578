"""Hostile bodies (too large, too deep, prototype keys, not JSON), request ids on responses and
log lines, and the security headers every response carries."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from httpkit import JOBS, Api, auth, email, payment, serve_api

from tickq.logs import configure_logging

SECURITY = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@pytest.fixture
async def small_api() -> AsyncIterator[Api]:
    async with serve_api({"TICKQ_MAX_BODY_BYTES": "2048"}) as running:
        yield running


def nested(depth: int) -> dict[str, Any]:
    """An email whose body, as a whole, is `depth` objects deep."""
    inner: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 3):  # body (1) > data (2) > data (3) > ... > inner (depth)
        inner = {"n": inner}
    return {**email(), "data": {"to": f"d{depth}@x.io", "template": "t", "data": inner}}


async def test_an_oversized_body_is_413(small_api: Api) -> None:
    body = {**email(), "data": {"to": "a@x.io", "template": "t", "data": {"x": "y" * 4000}}}
    resp = await small_api.client.post(JOBS, json=body, headers=auth())
    assert resp.status == 413
    out = await resp.json()
    assert (out["error"], out["code"]) == ("Request Entity Too Large", "payload_too_large")
    assert await small_api.engine.list_jobs(_all()) == []


async def test_an_oversized_chunked_body_is_413(small_api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"queue": "communication", "type": "send-email", "data": {"x": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}}'

    resp = await small_api.client.post(JOBS, data=chunks(), headers={
        **auth(), "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["code"] == "payload_too_large"


async def test_json_at_the_depth_limit_is_accepted_and_deeper_is_refused(api: Api) -> None:
    assert (await api.client.post(JOBS, json=nested(32), headers=auth())).status == 201
    for depth in (33, 5000):
        resp = await api.client.post(JOBS, data=orjson.dumps(nested(depth)) if depth < 1000
                                     else _deep_text(depth),
                                     headers={**auth(), "Content-Type": "application/json"})
        assert resp.status == 400, depth
        assert (await resp.json())["code"] == "json_too_deep"


def _deep_text(depth: int) -> bytes:
    return b'{"queue":"communication","type":"send-email","data":' + b'{"a":' * depth + b"1" + (
        b"}" * depth) + b"}"


@pytest.mark.parametrize(("body", "field"), [
    ({**email(), "__proto__": {"admin": True}}, "__proto__"),
    ({**email(), "data": {"to": "a@x.io", "template": "t", "data": {"__proto__": {"x": 1}}}},
     "data.data.__proto__"),
    ({**email(), "data": {"to": "a@x.io", "template": "t",
                          "data": {"constructor": {"prototype": {"x": 1}}}}},
     "data.data.constructor.prototype"),
    ({**email(), "data": {"to": "a@x.io", "template": "t", "data": {"list": [{"__x": 1}]}}},
     "data.data.list[0].__x"),
    ({**email(), "options": {"myPrototypeField": 1}}, "options.myPrototypeField"),
])
async def test_prototype_keys_are_refused(api: Api, body: dict[str, Any], field: str) -> None:
    resp = await api.client.post(JOBS, json=body, headers=auth())
    assert resp.status == 400
    out = await resp.json()
    assert out["code"] == "forbidden_key"
    assert out["details"][0]["field"] == field
    assert await api.engine.list_jobs(_all()) == []


async def test_keys_spelled_with_escapes_are_refused(api: Api) -> None:
    # the raw bytes hold neither '"__' nor 'prototype': only the decoded key does
    raw = orjson.dumps(email()).replace(b'"data":{', b'"data":{"\\u005f_x":1,', 1)
    resp = await api.client.post(JOBS, data=raw, headers={**auth(),
                                                          "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["details"][0] == {
        "field": "data.__x", "code": "forbidden_key",
        "message": "the key '__x' is not allowed (keys may not start with '__' or contain "
                   "'prototype')"}


async def test_values_mentioning_prototype_are_fine(api: Api) -> None:
    body = {**email(), "data": {"to": "a@x.io", "template": "prototype",
                                "data": {"note": "__proto__"}}}
    assert (await api.client.post(JOBS, json=body, headers=auth())).status == 201


@pytest.mark.parametrize(("data", "ctype", "status", "code"), [
    (b"{not json", "application/json", 400, "invalid_json"),
    (b"", "application/json", 400, "invalid_json"),
    (b'{"queue": NaN}', "application/json", 400, "invalid_json"),
    (b"[1, 2]", "application/json", 400, "validation_error"),
    (b'{"queue": "x"}', "text/plain", 415, "unsupported_media_type"),
])
async def test_bodies_that_are_not_a_json_object(api: Api, data: bytes, ctype: str, status: int,
                                                 code: str) -> None:
    resp = await api.client.post(JOBS, data=data, headers={**auth(), "Content-Type": ctype})
    assert resp.status == status
    assert (await resp.json())["code"] == code


# --- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "echoed"), [
    ("abc-123", "abc-123"),
    ("trace:1/2@svc", "trace:1/2@svc"),
    ('evil" <script>\tx', "evilscriptx"),
    ("x" * 500, "x" * 128),
])
async def test_a_callers_request_id_is_kept_cleaned_and_bounded(api: Api, sent: str,
                                                                echoed: str) -> None:
    resp = await api.client.get("/health/live", headers={"X-Request-ID": sent})
    assert resp.headers["X-Request-ID"] == echoed


async def test_a_request_id_is_made_when_none_is_usable(api: Api) -> None:
    ids = set()
    for headers in ({}, {"X-Request-ID": "\"'<>"}):
        resp = await api.client.get(JOBS, headers=headers)
        rid = resp.headers["X-Request-ID"]
        assert len(rid) == 32 and (await resp.json())["requestId"] == rid
        ids.add(rid)
    assert len(ids) == 2


async def test_log_lines_of_a_request_carry_its_id(api: Api) -> None:
    job_id = await api.enqueue(payment())
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", stream)
        resp = await api.client.delete(f"{JOBS}/{job_id}",
                                       headers={**auth(), "X-Request-ID": "req-42"})
        assert resp.status == 200
        logging.getLogger("tickq.test").info("outside any request")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    cancel = [ln for ln in lines if ln.get("event") == "job_cancel_requested"]
    assert len(cancel) == 1 and cancel[0]["request_id"] == "req-42"
    assert cancel[0]["user_id"] == "u1" and cancel[0]["job_id"] == job_id
    outside = [ln for ln in lines if ln["message"] == "outside any request"]
    assert "request_id" not in outside[0]


# --- security headers ------------------------------------------------------------------------


async def test_every_response_carries_the_security_headers(small_api: Api) -> None:
    client = small_api.client
    job_id = await small_api.enqueue(payment())
    responses = [
        await client.get(f"{JOBS}/{job_id}", headers=auth()),     # 200
        await client.post(JOBS, json=payment(amount=5), headers=auth()),  # 201
        await client.get(JOBS),                                   # 401
        await client.get(JOBS, headers=auth("user", user="x")),   # 200, empty
        await client.post(f"{JOBS}/batch", json={}, headers=auth("user")),  # 403
        await client.get("/nope"),                                # 404
        await client.put(JOBS, headers=auth()),                   # 405
        await client.post(JOBS, data=b"x" * 5000, headers={**auth(),
                          "Content-Type": "application/json"}),   # 413
        await client.get("/health/live"),                         # public
    ]
    assert sorted({r.status for r in responses}) == [200, 201, 401, 403, 404, 405, 413]
    for resp in responses:
        for name, value in SECURITY.items():
            assert resp.headers.get(name) == value, (resp.status, name)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Request-ID"]


def _all() -> Any:
    from tickq.storage.base import JobQuery

    return JobQuery(limit=1000)
