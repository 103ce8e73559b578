"""Live counts for open dashboard pages: `GET /dashboard/events`, a Server-Sent Events stream.

The stream listens to the engine's event bus. An event only marks the counts stale; the
stream then sends one fresh snapshot (every queue's counts, the oldest job's age and, for the
roles that may see them, the chart points) and waits `COALESCE_S` before it sends another, so a
burst of ten thousand completions costs a few snapshots, not ten thousand messages. A comment
line every `HEARTBEAT_S` keeps proxies from closing an idle stream.

Counts describe queues, not jobs (the API shows them to every role for the same reason), so a
snapshot is the same for every tenant; nothing job-specific is sent.

Streams end when the client goes (its subscription is removed), when the session ends, and when
the server shuts down:
`close_streams` runs on shutdown and wakes every stream to finish, so no open page holds up the
application's cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiohttp import web

from tickq.engine.engine import Engine
from tickq.engine.events import Event, EventKind
from tickq.http.dashboard.charts import chart_points
from tickq.http.dashboard.guard import PREFIX, may, signed_in
from tickq.http.dashboard.pages import overview_charts, queue_rows
from tickq.http.dashboard.session import SESSION
from tickq.http.keys import ENGINE, METRICS, PRINCIPAL

routes = web.RouteTableDef()

#: the shortest time between two snapshots
COALESCE_S = 0.3
#: a comment line this often while nothing changes
HEARTBEAT_S = 15.0
#: how often an idle stream looks for changes that are not job events (queue pauses)
RECHECK_S = 1.0
#: the events that change a count
KINDS = frozenset({EventKind.ENQUEUED, EventKind.STARTED, EventKind.COMPLETED, EventKind.FAILED,
                   EventKind.RETRIED, EventKind.DEFERRED, EventKind.CANCELLED,
                   EventKind.STALLED, EventKind.EXPIRED, EventKind.REVIVED,
                   EventKind.DISCARDED})


class Streams:
    """The open streams of one application, so shutdown can end them."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.open: set[asyncio.Event] = set()

    def close(self) -> None:
        self.closing.set()
        for wake in self.open:
            wake.set()


STREAMS = web.AppKey("tickq.dashboard.streams", Streams)


async def close_streams(app: web.Application) -> None:
    """`on_shutdown`: end every open stream."""
    app[STREAMS].close()


async def snapshot(request: web.Request, with_charts: bool) -> dict[str, Any]:
    engine, metrics = request.app[ENGINE], request.app[METRICS]
    found: dict[str, Any] = {"queues": await queue_rows(engine)}
    if with_charts:
        found["charts"] = chart_points(overview_charts(engine, metrics))
    return found


def _paused(engine: Engine) -> tuple[bool, ...]:
    return tuple(engine.is_paused(q.name) for q in engine.registry.queues)


def _message(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@routes.get(f"{PREFIX}/events")
@signed_in
async def events(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    engine = request.app[ENGINE]
    with_charts = may(request[PRINCIPAL], "charts")
    session = request[SESSION]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    wake = asyncio.Event()
    stale = True  # the first snapshot goes out at once

    def changed(event: Event) -> None:
        nonlocal stale
        stale = True
        wake.set()

    unsubscribe = engine.events.subscribe(changed, KINDS)
    streams.open.add(wake)
    paused = _paused(engine)
    quiet_since = time.monotonic()
    try:
        await response.write(b"retry: 2000\n\n")
        while not streams.closing.is_set():
            if time.time() >= session.until:
                break  # the session ended: the page's next load asks to sign in again
            now_paused = _paused(engine)
            if now_paused != paused:  # a pause is no job event; it is looked at every second
                paused, stale = now_paused, True
            if stale:
                stale = False
                await response.write(_message("counts", await snapshot(request, with_charts)))
                quiet_since = time.monotonic()
                await asyncio.sleep(COALESCE_S)
                continue
            if time.monotonic() - quiet_since >= HEARTBEAT_S:
                await response.write(b": heartbeat\n\n")
                quiet_since = time.monotonic()
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(),
                                       max(0.0, min(RECHECK_S, session.until - time.time())))
    finally:
        unsubscribe()
        streams.open.discard(wake)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
