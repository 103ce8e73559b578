"""Two engines on one PostgreSQL schema, in one process: every job runs exactly once, none is
lost, and what one node does (enqueue, pause, resume) reaches the other.

Each engine has its own `PostgresStore` (its own pools and node lock), as two `tickq serve`
processes would; they share only the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import DEFAULTS, FAST, eventually
from pgkit import pg

import tickq
from tickq.storage.postgres import PostgresStore


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


Q = "communication"


def node(url: str, **options: Any) -> tickq.Engine:
    return tickq.Engine(PostgresStore(url), **{**DEFAULTS, **options})


async def test_two_engines_run_each_of_2000_jobs_exactly_once(url: str) -> None:
    runs: Counter[str] = Counter()
    by_node: Counter[str] = Counter()
    engines = [node(url, concurrency={Q: 16}), node(url, concurrency={Q: 16})]

    def worker(name: str) -> Callable[[tickq.Job], Awaitable[int]]:
        async def work(job: tickq.Job) -> int:
            runs[job.id] += 1
            by_node[name] += 1
            await asyncio.sleep(0.001)
            return job.attempts
        return work

    for name, engine in zip(("a", "b"), engines, strict=True):
        engine.register(tickq.JobType(name="record", queue=Q, backoff=FAST), worker(name))

    async with engines[0], engines[1]:
        ids: list[str] = []
        for start in range(0, 2000, 250):
            batch = [tickq.JobSpec(type="record", data={"i": i}, tenant_id=f"t{i % 5}")
                     for i in range(start, start + 250)]
            producer = engines[(start // 250) % 2]
            ids.extend(e.job.id for e in await producer.enqueue_many(batch))
        await eventually(lambda: sum(runs.values()) >= 2000, 30, "2,000 runs")
        await asyncio.sleep(0.2)  # a second run of anything would show up now
        counts = await engines[0].counts(Q)

    assert len(set(ids)) == 2000
    assert set(runs) == set(ids)
    assert max(runs.values()) == 1
    assert by_node["a"] > 0 and by_node["b"] > 0
    assert (counts.completed, counts.waiting, counts.active, counts.failed) == (2000, 0, 0, 0)
    rows = await pg.table_rows(url, "SELECT attempts, stalls, count(*) FROM jobs "
                                    "GROUP BY attempts, stalls")
    assert [tuple(r) for r in rows] == [(1, 0, 2000)]


async def test_a_pause_on_one_node_holds_the_queue_on_every_node(url: str) -> None:
    started: list[str] = []
    first, second = node(url), node(url)
    for engine in (first, second):
        @engine.processor("note", queue=Q, backoff=FAST)
        async def note(job: tickq.Job) -> None:
            started.append(job.id)

    async with first, second:
        await first.pause(Q)
        # the second node reads the pause back within about a second
        await eventually(lambda: second.is_paused(Q), 3, "the second node to pause")
        job = await second.enqueue("note", {})
        await asyncio.sleep(0.5)
        assert started == []
        held = await second.get(job.id)
        assert held is not None and held.state is tickq.JobState.WAITING

        await second.resume(Q)  # resumed elsewhere: the first node follows too
        done = await second.wait(job.id, timeout=5)
        assert done.state is tickq.JobState.COMPLETED
        await eventually(lambda: not first.is_paused(Q), 3, "the first node to resume")
    assert started == [job.id]


async def test_a_job_enqueued_elsewhere_starts_without_waiting_for_a_poll(url: str) -> None:
    """The idle node is woken by the other's notification, not by its once-a-second look."""
    started: dict[str, float] = {}
    worker = node(url)

    @worker.processor("note", queue=Q, backoff=FAST)
    async def note(job: tickq.Job) -> None:
        started[job.id] = time.monotonic()

    producer = PostgresStore(url)
    async with worker:
        await producer.open({q.name: q for q in worker.registry.queues}, time.time())
        try:
            delays: list[float] = []
            for _ in range(3):
                await asyncio.sleep(0.35)
                job = worker.build(tickq.JobSpec(type="note", data={}))
                sent = time.monotonic()
                await producer.job_insert_many([job], time.time())
                await eventually(lambda job=job: job.id in started, 3, "the job to start")
                delays.append(started[job.id] - sent)
        finally:
            await producer.close()
    assert max(delays) < 0.25, delays


async def test_a_node_whose_session_ends_leaves_its_running_jobs_to_the_others_as_stalls(
        url: str) -> None:
    """A node whose database session ends (the process died, or its connection did) loses its
    claims: the other node's maintenance rescues them as stalls at once, without waiting for
    the 30 s lease, and runs them again; the first node's late outcome is dropped."""
    entered = asyncio.Event()
    runs: Counter[str] = Counter()
    first, second = node(url, maintenance_interval_s=0.1), node(url, maintenance_interval_s=0.1)

    @first.processor("slow", queue=Q, backoff=FAST)
    async def hang(job: tickq.Job) -> None:
        runs[job.id] += 1
        entered.set()
        await asyncio.sleep(30)

    @second.processor("slow", queue=Q, backoff=FAST)
    async def finish(job: tickq.Job) -> str:
        runs[job.id] += 1
        return "second"

    async with second:
        await second.pause(Q)  # the first node takes the job
        async with first:
            await first.resume(Q)
            job = await first.enqueue("slow", {})
            await asyncio.wait_for(entered.wait(), 5)
            await second.resume(Q)
            pid = first.store.node.server_pid  # type: ignore[attr-defined]
            await pg.table_rows(url, "SELECT pg_terminate_backend($1)", pid)
            done = await second.wait(job.id, timeout=5)
            await first.stop(grace_s=0)  # its interrupted run's outcome matches no claim
        final = await second.get(job.id)

    assert done.result == "second"
    assert (done.attempts, done.stalls) == (2, 1)
    assert [e.code for e in done.errors] == ["stalled"]
    assert second.stats["stalled"] == 1
    assert runs[job.id] == 2
    assert final is not None and (final.state, final.result) == (tickq.JobState.COMPLETED,
                                                                 "second")
