"""`analytics-track`: record an analytics event in the store, in batches.

Analytics events arrive in bursts (every page view of an on-sale), and a store write per event
would cost a journal round trip each. Instead every running job hands its event to one
`EventBatcher`, which writes whatever has gathered with a single `Store.events_append` once
`max_rows` are waiting or the oldest has waited `max_delay_s`, and only then lets each of those
jobs complete: a completed `analytics-track` job means its event is recorded.

The job's id is the event's id. A job that runs again after its event was written (a timeout
after the write, a shutdown) appends it again and the store keeps one copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.errors import PermanentError, RetryableError, StoreClosedError
from tickq.processors.background import parse_instant, text_field
from tickq.storage.base import AnalyticsEvent, Store

if TYPE_CHECKING:
    from tickq.engine.engine import Engine

log = logging.getLogger(__name__)

#: a batch is written once this many events wait...
MAX_BATCH_ROWS = 500
#: ...or once the oldest has waited this long
MAX_BATCH_DELAY_S = 0.002


class EventBatcher:
    """Gathers events from concurrently running jobs and writes them in batches.

    One writer task (started with the first event) writes one batch at a time; events that
    arrive while a batch is being written gather for the next one, so the batches grow with the
    load instead of the writes multiplying."""

    def __init__(self, store: Store, *, max_rows: int = MAX_BATCH_ROWS,
                 max_delay_s: float = MAX_BATCH_DELAY_S) -> None:
        if max_rows < 1 or max_delay_s < 0:
            raise ValueError("max_rows must be >= 1 and max_delay_s >= 0")
        self.store = store
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._pending: list[tuple[AnalyticsEvent, asyncio.Future[None]]] = []
        #: loop time at which the oldest pending event arrived
        self._oldest = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: batches written and the events they carried, for tests and benchmarks
        self.writes = 0
        self.rows = 0

    async def append(self, event: AnalyticsEvent) -> None:
        """Queue `event` and return once the batch carrying it is written (raises
        `RetryableError` if that write failed)."""
        if self._closed:
            raise StoreClosedError("the analytics batcher is closed")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="tickq-analytics-batcher")
        fut: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            self._oldest = loop.time()
        self._pending.append((event, fut))
        self._wake.set()
        if len(self._pending) >= self.max_rows:
            self._full.set()
        await fut

    async def close(self) -> None:
        """Stop the writer; events not yet written fail their jobs' waits. Safe to repeat."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pending, self._pending = self._pending, []
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(StoreClosedError("the analytics batcher closed"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                continue
            wait = self._oldest + self.max_delay_s - loop.time()
            if wait > 0 and len(self._pending) < self.max_rows:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._full.wait()
            batch = self._pending[: self.max_rows]
            del self._pending[: self.max_rows]
            if self._pending:
                self._oldest = loop.time()
            else:
                self._wake.clear()
            await self._write(batch)

    async def _write(self, batch: list[tuple[AnalyticsEvent, asyncio.Future[None]]]) -> None:
        try:
            await self.store.events_append([event for event, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(StoreClosedError("the analytics batcher closed"))
            raise
        except Exception as exc:
            log.warning("recording analytics events failed: %s", exc,
                        extra={"event": "analytics_write_failed", "count": len(batch)})
            for _, fut in batch:
                if not fut.done():
                    error = RetryableError(f"recording the analytics event failed: {exc}",
                                           code="analytics_write_failed")
                    error.__cause__ = exc
                    fut.set_exception(error)
            return
        self.writes += 1
        self.rows += len(batch)
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)


class AnalyticsTracker:
    """The `analytics-track` processor."""

    def __init__(self, engine: Engine, batcher: EventBatcher) -> None:
        self.engine = engine
        self.batcher = batcher

    async def track(self, job: Job) -> dict[str, Any]:
        data = job.data
        if not isinstance(data, dict):
            raise PermanentError("analytics-track data must be a JSON object",
                                 code="invalid_job_data")
        event_type = text_field(data, "eventType")
        if event_type is None:
            raise PermanentError("data.eventType must be a non-empty string",
                                 code="invalid_job_data")
        occurred_at = parse_instant(data.get("timestamp"), "data.timestamp")
        properties = data.get("data")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise PermanentError("data.data must be a JSON object", code="invalid_job_data")
        now = self.engine.clock.now()
        await self.batcher.append(AnalyticsEvent(
            id=job.id, tenant_id=job.tenant_id, event_type=event_type,
            venue_id=text_field(data, "venueId"), user_id=text_field(data, "userId"),
            event_id=text_field(data, "eventId"), data_json=orjson.dumps(properties),
            occurred_at=occurred_at, recorded_at=now))
        # The spec's result shape for this job type.
        return {"success": True, "data": {"eventType": event_type, "processedAt": iso(now)}}
