"""Leadership between two nodes on one PostgreSQL schema, in one process: only the node holding
the advisory lock runs maintenance and cron ticks; when its session ends the other takes over
within the leader check interval, and no cron slot is enqueued twice (or lost) across the change.

Each node is an engine with its own `PostgresStore` and `Scheduler`, as two `tickq serve`
processes would have. The engines share a fake clock, so task runs are stamped with it and cron
slots come due when the test says; APScheduler's short intervals are the only real waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import DEFAULTS, eventually
from pgkit import pg

import tickq
from tickq.clock import FakeClock
from tickq.engine.engine import Engine
from tickq.scheduling import (
    JobTemplate,
    Scheduler,
    SchedulerConfig,
    create_schedule,
    store_leader_check,
    tick_key,
)
from tickq.scheduling.maintenance import RETENTION
from tickq.storage.base import JobQuery
from tickq.storage.postgres import PostgresStore


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url



#: Monday 5 January 2026, 08:00:00 UTC (a minute boundary)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()
CHECK_S = 0.3
#: how late past the check interval a takeover may be noticed on a busy machine
SLACK_S = 0.7
CONFIG = SchedulerConfig(retention_interval_s=0.1, schedule_sync_interval_s=0.1,
                         leader_check_interval_s=CHECK_S)
EMAIL = JobTemplate(queue="communication", type="send-email",
                    data={"to": "ops@example.com", "template": "minutely-digest"})


def node(url: str, clock: FakeClock) -> tuple[Engine, Scheduler]:
    engine = Engine(PostgresStore(url), clock=clock, **DEFAULTS)
    return engine, Scheduler(engine, CONFIG, is_leader=store_leader_check(engine.store))


def ok_runs(scheduler: Scheduler) -> list[float]:
    """When each completed retention run of `scheduler` started (fake-clock time)."""
    return [r.started_at for r in scheduler.runs.latest(1000, RETENTION) if r.outcome == "ok"]


async def leader_of(schedulers: list[Scheduler], timeout: float) -> Scheduler:
    await eventually(lambda: any(s.leading for s in schedulers), timeout, "a leader")
    leading = [s for s in schedulers if s.leading]
    assert len(leading) == 1
    return leading[0]


async def test_one_node_runs_maintenance_and_the_other_takes_over_when_its_session_ends(
        url: str) -> None:
    clock = FakeClock(T0)
    (engine_a, sched_a), (engine_b, sched_b) = node(url, clock), node(url, clock)
    async with engine_a, engine_b, sched_a, sched_b:
        first = await leader_of([sched_a, sched_b], 5)
        other = sched_b if first is sched_a else sched_a
        await eventually(lambda: len(ok_runs(first)) >= 3, 5, "retention runs on the leader")
        assert ok_runs(other) == []
        assert not await other.leader()

        # The leader's session ends (as when its process dies): PostgreSQL frees the lock.
        clock.set(T0 + 1000)
        store = first.engine.store
        assert isinstance(store, PostgresStore)
        pid = store.node.server_pid
        assert pid is not None
        admin = await asyncpg.connect(pg.with_schema(pg.PG_URL, "public"))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        cut = time.monotonic()
        await eventually(lambda: other.leading, CHECK_S + SLACK_S, "the other node to lead")
        took_over_s = time.monotonic() - cut
        await eventually(lambda: len(ok_runs(other)) >= 3, 5, "retention runs on the new leader")
        # The old node reconnects (its session comes back after about a second) as a follower.
        await eventually(lambda: store.node.connected, 5, "the old node to reconnect")
        await asyncio.sleep(3 * CONFIG.retention_interval_s)
        assert not await first.leader()

    assert took_over_s < CHECK_S + SLACK_S
    assert all(t < T0 + 1000 for t in ok_runs(first))  # nothing after its session ended
    assert all(t >= T0 + 1000 for t in ok_runs(other))


async def test_cron_ticks_are_enqueued_once_each_across_a_leader_change(url: str) -> None:
    clock = FakeClock(T0)
    (engine_a, sched_a), (engine_b, sched_b) = node(url, clock), node(url, clock)
    made: dict[str, list[str]] = {"a": [], "b": []}
    for name, engine in (("a", engine_a), ("b", engine_b)):
        engine.events.subscribe(lambda e, name=name: made[name].append(e.job.idempotency_key),
                                {tickq.EventKind.ENQUEUED})
    slots = [T0 + 60 * minute for minute in range(1, 7)]

    async with engine_b, sched_b:
        await engine_a.start()
        await sched_a.start()
        await engine_a.pause("communication")  # ticks stay waiting (held on every node)
        first = await leader_of([sched_a, sched_b], 5)
        leader_engine = first.engine
        survivor = engine_b if leader_engine is engine_a else engine_a
        await create_schedule(survivor, name="digest", cron="* * * * *", template=EMAIL)
        for slot in slots[:3]:
            clock.set(slot + 1)
            await eventually_keyed(survivor, slot)
        # The leader goes away; the next slot comes due while nobody leads.
        await first.stop()
        await leader_engine.stop()
        clock.set(slots[3] + 1)
        second = sched_b if first is sched_a else sched_a
        await eventually(lambda: second.leading, CHECK_S + SLACK_S, "the other node to lead")
        for slot in slots[3:]:
            clock.set(slot + 1)
            await eventually_keyed(survivor, slot)
        await asyncio.sleep(3 * CONFIG.schedule_sync_interval_s)  # a repeat would show now
        jobs = await survivor.list_jobs(JobQuery(queue="communication", limit=100))
        if engine_a.running:
            await sched_a.stop()
            await engine_a.stop()

    keys = sorted(j.idempotency_key or "" for j in jobs)
    assert keys == sorted(tick_key("digest", s) for s in slots)
    created = made["a"] + made["b"]
    assert sorted(k or "" for k in created) == keys  # each slot enqueued once, by one node
    assert made["a"] and made["b"]  # both nodes led in turn


async def eventually_keyed(engine: Engine, slot: float, timeout: float = 5.0) -> None:
    """Wait until the job of `slot` exists (enqueued by whichever node leads)."""
    key = tick_key("digest", slot)
    deadline = time.monotonic() + timeout
    while True:
        jobs = await engine.list_jobs(JobQuery(queue="communication", limit=100))
        if any(j.idempotency_key == key for j in jobs):
            return
        assert time.monotonic() < deadline, f"slot {key} was not enqueued within {timeout}s"
        await asyncio.sleep(0.05)
