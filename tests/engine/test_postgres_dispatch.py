"""Dispatch over PostgreSQL where it differs most from the in-memory index: jobs parked by the
provider gate come back as slots free up (not at the feeder's once-a-second look), and a tenant
arriving behind another tenant's backlog is served within a round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from helpers import FAST, EventLog, eventually
from pgkit import pg
from test_providers_runtime import InFlight, enqueue_all, make_engine, specs, wait_all

import tickq
from tickq.engine.limiter import LimitConfig


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


COMPLETED = tickq.JobState.COMPLETED


async def test_a_concurrency_cap_parks_the_rest_and_each_release_brings_one_back(
        url: str) -> None:
    flight = InFlight()
    log = EventLog()
    # Maintenance (whose sweep also unparks) is kept out of the way: only releases can help.
    engine = make_engine(url, {"p1": LimitConfig(rate_per_s=1000.0, burst=1000,
                                                 max_concurrent=2, cooldown_s=0.1)},
                         concurrency={"money": 10}, maintenance_interval_s=60.0)
    engine.events.subscribe(log)

    @engine.processor("charge", queue="money", provider="p1", backoff=FAST)
    async def charge(job: tickq.Job) -> None:
        with flight:
            await asyncio.sleep(0.02)

    async with engine:
        # The node's first call on p1 waits for its first lease of tokens; take it first, so
        # that what parks the jobs below is the concurrency cap alone.
        await wait_all(engine, await enqueue_all(engine, specs("charge", 1)), timeout=5)
        t0 = time.monotonic()
        jobs = await enqueue_all(engine, specs("charge", 20))
        done = await wait_all(engine, jobs, timeout=5)
        elapsed = time.monotonic() - t0

    assert [j.state for j in done] == [COMPLETED] * 20
    assert [j.attempts for j in done] == [1] * 20
    assert flight.peak == 2
    # 10 rounds of 20 ms; waiting for the feeder's 1 s idle look would take seconds.
    assert elapsed < 1.0
    assert "concurrency" in {e.reason for e in log.of(tickq.EventKind.DEFERRED)}


async def test_a_tenant_arriving_behind_a_backlog_is_served_within_a_round(url: str) -> None:
    started: list[str] = []
    engine = make_engine(url, concurrency={"communication": 1}, prefetch={"communication": 0})

    @engine.processor("work", queue="communication", backoff=FAST)
    async def work(job: tickq.Job) -> None:
        started.append(job.tenant_id or "")
        await asyncio.sleep(0.002)

    async with engine:
        await engine.enqueue_many(specs("work", 500, tenant_id="big"))
        await eventually(lambda: len(started) >= 20, 5, "big's first jobs to start")
        small = await engine.enqueue("work", {}, tenant_id="small")
        enqueued = len(started)  # big's jobs keep starting while the insert commits
        done = await engine.wait(small.id, timeout=5)

    assert done.state is COMPLETED
    # At most the job already claimed and the one whose turn it was start before it.
    assert started.index("small") - enqueued <= 2
