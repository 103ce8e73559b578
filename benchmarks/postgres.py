"""Throughput on PostgreSQL: jobs/s end to end with one and with three nodes, and batch enqueue.

    python benchmarks/postgres.py                      # defaults: each run about 10-20 s here
    python benchmarks/postgres.py --jobs 20000 --enqueue-jobs 50000
    python benchmarks/postgres.py --only enqueue --url postgresql://127.0.0.1:5432/test

A node is what a `tickq serve` process is without HTTP: an engine on its own `PostgresStore`,
started here as a subprocess of this script, running a no-op processor. This process is the
producer: it builds the jobs and inserts them in batches of `--batch` (1,000) through a store of
its own, with `--producers` batches in flight. End to end is timed from the first enqueue to the
last completion recorded by any node (wall clock; a node counts a job when its completion is
committed); afterwards the database must hold exactly `--jobs` completed jobs, each run once.
Batch enqueue is the producer alone, nothing running the jobs.

Every run uses a schema of its own in the `--url` database, dropped afterwards, so runs never
see each other's jobs. The targets printed beside the figures are the issue's, for a 2-core
machine: >= 10,000 jobs/s end to end with one node, >= 60,000 jobs/s batch enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

import tickq
from tickq.engine.events import Event, EventKind
from tickq.storage.postgres import PostgresStore

DEFAULT_URL = os.environ.get("TICKQ_BENCH_PG_URL",
                             os.environ.get("TICKQ_TEST_PG_URL", "postgresql://127.0.0.1:5432/test"))
TARGET_END_TO_END = 10_000
TARGET_ENQUEUE = 60_000
#: how often a node reports its completions to the producer
REPORT_EVERY_S = 0.05
#: no run may take longer than this (a stuck node fails the run instead of hanging it)
RUN_TIMEOUT_S = 600.0
SCRIPT = os.path.abspath(__file__)


def with_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema`."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """A new schema for one run; yields the URL that uses it and drops it afterwards."""
    schema = f"tickq_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url, timeout=5)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield with_schema(url, schema)
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()


def _engine(url: str, queue: str, concurrency: int) -> tickq.Engine:
    engine = tickq.Engine(PostgresStore(url), concurrency={queue: concurrency})
    engine.register(tickq.JobType(name="noop", queue=queue, timeout_s=60), _noop)
    return engine


async def _noop(job: tickq.Job) -> None:
    return None


# --- the node (a subprocess) -----------------------------------------------------------------

async def run_node(url: str, queue: str, concurrency: int) -> None:
    """Run jobs until stdin closes; report `count last_completion_time` lines on stdout."""
    engine = _engine(url, queue, concurrency)
    completed = 0
    last = 0.0

    def on_event(ev: Event) -> None:
        nonlocal completed, last
        completed += 1
        last = time.time()

    engine.events.subscribe(on_event, {EventKind.COMPLETED})
    await engine.start()
    print("ready", flush=True)
    stdin_closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    reported = -1
    while not stdin_closed.done():
        if completed != reported:
            reported = completed
            print(f"done {completed} {last:.6f}", flush=True)
        await asyncio.wait({stdin_closed}, timeout=REPORT_EVERY_S)
    await engine.stop(grace_s=5)
    print(f"done {completed} {last:.6f}", flush=True)
    print(f"stopped {completed}", flush=True)


# --- the producer (this process) -------------------------------------------------------------

@dataclass
class Result:
    jobs_s: float
    elapsed_s: float
    #: end to end only: how fast the producer enqueued meanwhile, and each node's runs
    enqueue_s: float = 0.0
    shares: tuple[int, ...] = ()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@dataclass
class Node:
    proc: asyncio.subprocess.Process
    completed: int = 0
    last: float = 0.0
    stopped: bool = False


async def _start_node(url: str, queue: str, concurrency: int, uvloop: bool) -> Node:
    argv = [sys.executable, SCRIPT, "--node", url, "--queue", queue,
            "--concurrency", str(concurrency)]
    if uvloop:
        argv.append("--uvloop")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if line.strip() != b"ready":
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"a node did not start (it said {line!r})")
    return Node(proc)


async def _follow(node: Node, progress: asyncio.Event) -> None:
    assert node.proc.stdout is not None
    async for raw in node.proc.stdout:
        word, *rest = raw.decode().split()
        if word == "done":
            node.completed, node.last = int(rest[0]), float(rest[1])
            progress.set()
        elif word == "stopped":
            node.stopped = True


class Producer:
    """Builds no-op jobs and inserts them in batches through a store of its own."""

    def __init__(self, url: str, queue: str) -> None:
        self.builder = _engine(url, queue, 1)  # never started: it only builds records
        self.store = self.builder.store

    async def __aenter__(self) -> Producer:
        queues = {q.name: q for q in self.builder.registry.queues}
        await self.store.open(queues, time.time())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    async def enqueue(self, n: int, batch: int, producers: int) -> None:
        sizes = [min(batch, n - i) for i in range(0, n, batch)]
        spec = tickq.JobSpec(type="noop", data={})

        async def send(mine: list[int]) -> None:
            for size in mine:
                jobs = [job for job in self.builder.build_many([spec] * size)
                        if isinstance(job, tickq.Job)]
                if len(jobs) != size:
                    raise RuntimeError("a no-op job failed validation")
                await self.store.job_insert_many(jobs, time.time())

        await asyncio.gather(*(send(sizes[k::producers]) for k in range(producers)))


async def end_to_end(base_url: str, n_nodes: int, n: int, args: argparse.Namespace
                     ) -> Result:
    async with fresh_schema(base_url) as url, Producer(url, args.queue) as producer:
        nodes = await asyncio.gather(*(
            _start_node(url, args.queue, args.concurrency, args.uvloop) for _ in range(n_nodes)))
        progress = asyncio.Event()
        followers = [asyncio.create_task(_follow(node, progress)) for node in nodes]
        try:
            t0 = time.time()
            await producer.enqueue(n, args.batch, args.producers)
            enqueued_s = time.time() - t0
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while sum(node.completed for node in nodes) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n_nodes} node(s) did not finish {n} jobs in time")
                progress.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), timeout=1)
            elapsed = max(node.last for node in nodes) - t0
        finally:
            for node in nodes:
                assert node.proc.stdin is not None
                node.proc.stdin.close()
            for node in nodes:
                try:
                    await asyncio.wait_for(node.proc.wait(), timeout=30)
                except TimeoutError:
                    node.proc.kill()
                    await node.proc.wait()
            await asyncio.gather(*followers)
        runs = sum(node.completed for node in nodes)
        rows = await _fetch(url, "SELECT state, attempts, count(*) AS n FROM jobs "
                                 "GROUP BY state, attempts")
        table = {(r["state"], r["attempts"]): r["n"] for r in rows}
        if table != {("completed", 1): n} or runs != n:
            raise RuntimeError(f"expected {n} jobs completed once each; the database holds "
                               f"{table} and the nodes ran {runs}")
        return Result(n / elapsed, elapsed, n / enqueued_s,
                      tuple(node.completed for node in nodes))


async def batch_enqueue(base_url: str, n: int, args: argparse.Namespace) -> Result:
    async with fresh_schema(base_url) as url, Producer(url, args.queue) as producer:
        t0 = time.perf_counter()
        await producer.enqueue(n, args.batch, args.producers)
        elapsed = time.perf_counter() - t0
        rows = await _fetch(url, "SELECT count(*) AS n FROM jobs WHERE state = 'waiting'")
        stored = rows[0]["n"]
        if stored != n:
            raise RuntimeError(f"expected {n} waiting jobs, the database holds {stored}")
        return Result(n / elapsed, elapsed)


async def bench(args: argparse.Namespace) -> None:
    only = set(args.only or ["one", "three", "enqueue"])
    for name, n_nodes in (("one", 1), ("three", 3)):
        if name not in only:
            continue
        r = await end_to_end(args.url, n_nodes, args.jobs, args)
        label = f"end to end, {n_nodes} node{'s' if n_nodes > 1 else ''}"
        target = (f" (target >= {TARGET_END_TO_END:,} with one node)" if n_nodes == 1 else "")
        shares = " / ".join(f"{s:,}" for s in r.shares)
        print(f"{label:34s} {r.jobs_s:>9,.0f} jobs/s{target}  ({args.jobs:,} jobs in "
              f"{r.elapsed_s:.2f} s, enqueued at {r.enqueue_s:,.0f}/s; runs per node "
              f"{shares})", flush=True)
    if "enqueue" in only:
        r = await batch_enqueue(args.url, args.enqueue_jobs, args)
        print(f"{f'batch enqueue ({args.batch:,} per batch)':34s} {r.jobs_s:>9,.0f} jobs/s "
              f"(target >= {TARGET_ENQUEUE:,})  ({args.enqueue_jobs:,} jobs in "
              f"{r.elapsed_s:.2f} s, {args.producers} batches in flight)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default=DEFAULT_URL,
                    help="the database (each run makes and drops a schema in it)")
    ap.add_argument("--jobs", type=int, default=150_000, help="jobs per end-to-end run")
    ap.add_argument("--enqueue-jobs", type=int, default=300_000,
                    help="jobs in the batch enqueue run")
    ap.add_argument("--batch", type=int, default=1_000, help="jobs per enqueued batch")
    ap.add_argument("--producers", type=int, default=4, help="batches in flight")
    ap.add_argument("--queue", default="communication", choices=["communication", "money"],
                    help="communication commits without waiting for the WAL flush, "
                         "money waits for it")
    ap.add_argument("--concurrency", type=int, default=256, help="running jobs per node")
    ap.add_argument("--only", choices=["one", "three", "enqueue"], action="append")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (the `speed` extra)")
    ap.add_argument("--node", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    if args.node:
        asyncio.run(run_node(args.node, args.queue, args.concurrency))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, loop "
          f"{'uvloop' if args.uvloop else 'asyncio'}, queue {args.queue}, concurrency "
          f"{args.concurrency} per node", flush=True)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
