"""Shared pieces of the scheduling tests: engines on a fake clock, and a schedule's template."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import tickq
from tickq.clock import FakeClock
from tickq.engine.engine import Engine
from tickq.scheduling import JobTemplate
from tickq.storage.base import JobQuery

#: Monday 5 January 2026, 08:00:00 UTC
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0

#: an email every tick: the communication queue is paused in these tests, so ticks stay waiting
EMAIL = JobTemplate(queue="communication", type="send-email",
                    data={"to": "ops@example.com", "template": "daily-digest"})


def at(text: str) -> float:
    """'2026-01-05T09:00:00' (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@asynccontextmanager
async def engine_on(url: str, clock: FakeClock) -> AsyncIterator[Engine]:
    """A started engine whose communication queue is paused (ticks are only enqueued)."""
    engine = Engine(tickq.open_store(url), clock=clock, shutdown_grace_s=0.5)
    await engine.start()
    try:
        await engine.pause("communication")
        yield engine
    finally:
        await engine.stop()


async def tick_jobs(engine: Engine) -> dict[str, str]:
    """Idempotency key -> job id of every job a schedule enqueued."""
    jobs = await engine.list_jobs(JobQuery(queue="communication", limit=1000))
    keyed = {j.idempotency_key: j.id for j in jobs
             if j.idempotency_key and j.idempotency_key.startswith("schedule:")}
    assert len(keyed) == len([j for j in jobs if j.idempotency_key in keyed])
    return keyed
