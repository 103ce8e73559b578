"""The dashboard's live stream: snapshots after changes, coalesced, ending with the server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import ClientResponse
from dashkit import DASH, sign_in
from httpkit import Api, payment, serve_api

from tickq.http.dashboard.live import STREAMS


async def next_snapshot(resp: ClientResponse, timeout: float = 2.0) -> dict[str, Any]:
    """The next `counts` message of the stream (comments and other fields skipped)."""
    while True:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout)
        lines = block.decode().splitlines()
        if "event: counts" in lines:
            data = next(line for line in lines if line.startswith("data: "))
            found: dict[str, Any] = orjson.loads(data.removeprefix("data: "))
            return found


def waiting(snapshot: dict[str, Any], queue: str) -> int:
    return int(next(q for q in snapshot["queues"] if q["name"] == queue)["waiting"])


async def test_the_stream_sends_a_snapshot_soon_after_a_job_is_enqueued(api: Api) -> None:
    await sign_in(api)
    resp = await api.client.get(f"{DASH}/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await next_snapshot(resp)
    assert waiting(first, "money") == 0 and "charts" in first
    started = time.monotonic()
    await api.enqueue(payment())
    second = await next_snapshot(resp, timeout=1.0)
    assert waiting(second, "money") == 1
    assert time.monotonic() - started < 1.0
    resp.close()


async def test_a_burst_of_changes_is_coalesced(api: Api) -> None:
    await sign_in(api)
    resp = await api.client.get(f"{DASH}/events")
    await next_snapshot(resp)
    for i in range(40):
        await api.enqueue(payment(amount=100 + i))
    seen = 0
    latest: dict[str, Any] = {}
    while not latest or waiting(latest, "money") < 40:
        latest = await next_snapshot(resp, timeout=2.0)
        seen += 1
    assert seen < 10  # a few snapshots for forty changes, never one each
    resp.close()


async def test_the_stream_needs_a_session_and_hides_charts_from_tenants(api: Api) -> None:
    resp = await api.client.get(f"{DASH}/events", allow_redirects=False)
    assert resp.status == 303
    await sign_in(api, "user")
    resp = await api.client.get(f"{DASH}/events")
    snapshot = await next_snapshot(resp)
    assert "charts" not in snapshot and waiting(snapshot, "money") == 0
    resp.close()


async def test_an_open_stream_does_not_hold_up_shutdown() -> None:
    async with serve_api() as api:
        await sign_in(api)
        resp = await api.client.get(f"{DASH}/events")
        await next_snapshot(resp)
        started = time.monotonic()
    assert time.monotonic() - started < 3.0
    assert not api.client.app[STREAMS].open  # the stream ended and unsubscribed


async def test_the_stream_ends_when_the_session_does(api: Api) -> None:
    await sign_in(api, ttl_s=2)
    resp = await api.client.get(f"{DASH}/events")
    assert resp.status == 200
    started = time.monotonic()
    await next_snapshot(resp)
    rest = await asyncio.wait_for(resp.content.read(), 5.0)  # returns at the end of the stream
    assert time.monotonic() - started < 4.0
    assert b"event: counts" not in rest  # nothing more was sent after the session ended


def failed(snapshot: dict[str, Any], queue: str) -> int:
    return int(next(q for q in snapshot["queues"] if q["name"] == queue)["failed"])


def is_paused(snapshot: dict[str, Any], queue: str) -> bool:
    return bool(next(q for q in snapshot["queues"] if q["name"] == queue)["paused"])


async def test_discards_and_queue_pauses_reach_an_open_stream(api: Api) -> None:
    # Neither is a job moving between states the way a completion is: a discard deletes the
    # job, a pause changes the queue.
    job_id = await api.enqueue({"queue": "communication", "type": "send-push",
                                "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(job_id, "failed")  # no push provider: straight to the DLQ
    await sign_in(api)
    resp = await api.client.get(f"{DASH}/events")
    assert failed(await next_snapshot(resp), "communication") == 1
    await api.engine.discard(job_id)
    assert failed(await next_snapshot(resp, timeout=1.5), "communication") == 0
    await api.engine.resume("money")  # the test app holds money and background paused
    assert not is_paused(await next_snapshot(resp, timeout=2.5), "money")
    await api.engine.pause("money")
    assert is_paused(await next_snapshot(resp, timeout=2.5), "money")
    resp.close()
