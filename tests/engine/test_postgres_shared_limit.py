"""One provider limit shared by every node on a PostgreSQL database.

Three engines, each on its own `PostgresStore` over one schema (as three `tickq serve` processes
would be), drain a deep backlog of one provider's jobs: together they stay within the provider's
rate and burst, and every node gets a share. The lease statement itself is tested against the
database: it refills by elapsed database time and never beyond the burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from helpers import DEFAULTS
from pgkit import pg

import tickq
from tickq.engine.limiter import RateLimiter
from tickq.engine.limits import LimitConfig
from tickq.storage.postgres import PostgresStore
from tickq.storage.postgres_buckets import lease
from tickq.storage.postgres_node import migrate


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


Q = "communication"
RATE, BURST = 25.0, 50
ACME = LimitConfig(rate_per_s=RATE, burst=BURST, max_concurrent=1_000, cooldown_s=1.0)
RUN_S = 12.0
WINDOW_S = 10.0
NODES = ("a", "b", "c")
BACKLOG_PER_NODE = 300


def most_in_window(times: list[float], window: float) -> int:
    """The most starts within any `window` seconds (windows opening at a start are enough)."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] <= start + window:
            j += 1
        best = max(best, j - i)
    return best


async def test_three_nodes_together_stay_within_one_provider_limit(url: str) -> None:
    starts: list[float] = []
    by_node: Counter[str] = Counter()
    engines = [tickq.Engine(PostgresStore(url), concurrency={Q: 32},
                            limiter=RateLimiter({"acme": ACME}, {}), **DEFAULTS)
               for _ in NODES]
    job_type = tickq.JobType(name="acme-call", queue=Q, provider="acme")

    def worker(name: str) -> Callable[[tickq.Job], Awaitable[None]]:
        async def call(job: tickq.Job) -> None:
            starts.append(time.monotonic())
            by_node[name] += 1
            await asyncio.sleep(0.002)
        return call

    for name, engine in zip(NODES, engines, strict=True):
        engine.register(job_type, worker(name))

    async with engines[0], engines[1], engines[2]:
        for engine in engines:
            await engine.enqueue_many(
                [tickq.JobSpec(type="acme-call", data={"i": i}) for i in range(BACKLOG_PER_NODE)])
        await asyncio.sleep(RUN_S)
        sources = [e.store.buckets for e in engines if isinstance(e.store, PostgresStore)]
        leased = sum(src.leased.get("acme", 0) for src in sources if src is not None)
        started_then = len(starts)

    peak = most_in_window(starts, WINDOW_S)
    total = len(starts)
    print(f"starts={total} peak per {WINDOW_S:g}s={peak} by node={dict(by_node)} "
          f"leased={leased}")
    # Tokens are counted when a job is claimed and the processor's start is observed after the
    # claim's commit, so starts can bunch by a few: 2% of the limit is allowed for that, as the
    # single-node limiter's end-to-end checks allow (measured here: 299-300 against 300).
    assert peak <= (RATE * WINDOW_S + BURST) * 1.02, peak
    # the backlog never ran dry, so the limit was also reached, not just respected
    assert total >= 0.8 * (BURST + RATE * (RUN_S - 1)), total
    assert total <= BURST + RATE * (RUN_S + 1), total
    assert leased >= started_then  # every start spent a leased token
    for name in NODES:
        assert by_node[name] >= total / len(NODES) / 3, (name, dict(by_node))


async def test_a_lease_refills_by_database_time_and_never_beyond_the_burst(url: str) -> None:
    cfg = LimitConfig(rate_per_s=10.0, burst=5, max_concurrent=10, cooldown_s=1.0)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, str(await conn.fetchval("SELECT current_schema()")))

        async def back(seconds: float) -> None:
            await conn.execute("UPDATE provider_buckets SET refilled_at = refilled_at "
                               "- make_interval(secs => $1) WHERE bucket = 'acme'", seconds)

        first = await lease(conn, "acme", cfg, 3)  # a new bucket starts full
        assert (first.granted, first.left, first.rate) == (3, 2.0, 10.0)
        rest = await lease(conn, "acme", cfg, 10)  # only the whole tokens left (and a few ms)
        assert rest.granted == 2 and 0 <= rest.left < 1

        await back(0.35)  # 3.5 tokens of refill, plus the fraction that was left
        refill = await lease(conn, "acme", cfg, 10)
        assert refill.granted in (3, 4) and 0 <= refill.left < 1

        await back(100.0)  # a long idle period refills to the burst, not beyond
        full = await lease(conn, "acme", cfg, 100)
        assert full.granted == 5 and full.left < 1

        await back(100.0)
        some = await lease(conn, "acme", cfg, 2)
        assert some.granted == 2 and some.left == pytest.approx(3.0, abs=0.05)
        rows = await conn.fetch("SELECT tokens, burst FROM provider_buckets")
        assert all(r["tokens"] <= r["burst"] for r in rows)

        empty = await lease(conn, "acme", cfg, 10)  # the fraction left is not handed out
        assert empty.granted == 3
        nothing = await lease(conn, "acme", cfg, 10)
        assert nothing.granted == 0 and nothing.wait_s() > 0
    finally:
        await conn.close()


async def test_many_nodes_starting_at_once_spend_no_more_than_the_burst(url: str) -> None:
    # Ten nodes ask for a bucket at the same instant, each as fast as it can for a second: with
    # a refill of one token a minute, together they may spend the burst and nothing more.
    from tickq.storage.postgres_buckets import SharedBuckets

    slow = LimitConfig(rate_per_s=1 / 60, burst=12, max_concurrent=1_000, cooldown_s=1.0)
    conn = await asyncpg.connect(url)
    await migrate(conn, str(await conn.fetchval("SELECT current_schema()")))
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    nodes = [SharedBuckets(pool, RateLimiter({"acme": slow}, {})) for _ in range(10)]
    spent = [0] * len(nodes)
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for i, node in enumerate(nodes):
                while node.take("acme", 1, time.time()) is None:
                    spent[i] += 1
            await asyncio.sleep(0.01)
        assert sum(spent) == 12, spent  # the burst, all of it, and not one more
    finally:
        for node in nodes:
            await node.close()
        await pool.close()
        await conn.close()
