"""End-to-end engine throughput and latency, per tier, on the embedded SQLite journal.

For each scenario: no-op jobs, clock from the first enqueue to the last completion that is
durably recorded (completion events are emitted after the commit that carries them). Latency is
enqueue-to-start: the processor's start time minus the job's created_at.

    python benchmarks/engine_throughput.py            # all scenarios
    python benchmarks/engine_throughput.py --quick    # fewer jobs, for a smoke run
    python benchmarks/engine_throughput.py --only restart --restart-jobs 1000000

Prints one line per scenario. Figures depend on the machine: the ones in benchmarks/README.md
were measured on a 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

import tickq
from tickq.engine.events import Event, EventKind
from tickq.engine.ids import IdGenerator
from tickq.engine.registry import JobType
from tickq.storage.journal import INSERT_SQL
from tickq.storage.sqlite import SqliteStore, migrations

TIER_QUEUE = {"money": "money", "communication": "communication", "background": "background"}


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def _run(url: str, queue: str, n: int, mode: str, concurrency: int,
               batch: int, producers: int) -> dict[str, float]:
    engine = tickq.Engine(tickq.open_store(url), concurrency={queue: concurrency})
    latencies: list[float] = []
    done = asyncio.Event()
    completed = 0

    async def noop(job: tickq.Job) -> None:
        latencies.append(time.time() - job.created_at)

    engine.register(JobType(name="noop", queue=queue, timeout_s=60), noop)

    def on_event(ev: Event) -> None:
        nonlocal completed
        if ev.kind is EventKind.COMPLETED:
            completed += 1
            if completed >= n:
                done.set()

    engine.events.subscribe(on_event)
    await engine.start()
    spec = tickq.JobSpec(type="noop", data={})
    gc.collect()
    t0 = time.perf_counter()
    if mode == "batch":
        # `producers` clients, each sending batches back to back (as several API callers would)
        sizes = [min(batch, n - i) for i in range(0, n, batch)]

        async def batch_producer(mine: list[int]) -> None:
            for size in mine:
                await engine.enqueue_many([spec] * size)

        await asyncio.gather(*(batch_producer(sizes[k::producers]) for k in range(producers)))
    else:
        per = n // producers

        async def producer() -> None:
            for _ in range(per):
                await engine.enqueue("noop", {})

        await asyncio.gather(*(producer() for _ in range(producers)))
    t_enq = time.perf_counter() - t0
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - t0
    journal = getattr(engine.store, "journal", None)
    commits = journal.commits if journal is not None else 0
    rows = journal.rows if journal is not None else 0
    await engine.stop()
    return {"jobs": n, "jobs_s": n / elapsed, "enqueue_s": n / t_enq,
            "p50_ms": _percentile(latencies, 50) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000,
            "commits": commits, "rows_per_commit": rows / commits if commits else 0.0}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make_journal(path: str, n: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for number, script in migrations():
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    ids = IdGenerator()
    now = time.time()
    conn.execute("BEGIN")
    chunk = 50_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            rows.append((ids.new(now), "money", "noop", b'{"n":%d}' % i, "t1", None, 5, "waiting",
                         0, 10, now, None, None, 0, None, None, now, None, None, now + 86_400,
                         None, None, 0, None))
        conn.executemany(INSERT_SQL, rows)
    conn.execute("COMMIT")
    conn.close()


async def _restart(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "restart.db")
        _make_journal(path, n)
        gc.collect()
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        engine = tickq.Engine(SqliteStore(path))
        engine.register(JobType(name="noop", queue="money"), lambda job: None)
        await engine.start()
        ready = time.perf_counter() - t0
        counts = await engine.counts("money")
        rss = _rss_mb()
        await engine.stop(grace_s=0)
        assert counts.waiting + counts.active + counts.completed >= n, counts
        return {"jobs": n, "ready_s": ready, "rss_mb": rss, "rss_delta_mb": rss - rss0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer jobs")
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--producers", type=int, default=100,
                    help="concurrent single-job producers")
    ap.add_argument("--batch-producers", type=int, default=4,
                    help="concurrent producers of batches")
    ap.add_argument("--restart-jobs", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["money", "money-single", "communication", "background",
                                       "restart"], action="append")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--quiet", action="store_true", help="no header line")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.restart_jobs = 20_000, 100_000
    if args.uvloop:
        import uvloop

        uvloop.install()
    only = set(args.only or ["money", "money-single", "communication", "background", "restart"])
    if not args.quiet:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, loop "
              f"{'uvloop' if args.uvloop else 'asyncio'}, concurrency {args.concurrency}, "
              f"batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        def url(name: str) -> str:
            return f"sqlite:///{os.path.join(tmp, name)}.db"

        plan = [
            ("money", "money", "batch"),
            ("money-single", "money", "single"),
            ("communication", "communication", "batch"),
            ("background", "background", "batch"),
        ]
        for name, queue, mode in plan:
            if name not in only:
                continue
            producers = args.batch_producers if mode == "batch" else args.producers
            r = asyncio.run(_run(url(name), queue, args.jobs, mode, args.concurrency,
                                 args.batch, producers))
            label = (f"{name} ({producers} x batches of {args.batch})" if mode == "batch"
                     else f"{name} ({producers} single-enqueue producers)")
            print(f"{label:52s} {r['jobs_s']:>9,.0f} jobs/s  enqueue {r['enqueue_s']:>9,.0f}/s  "
                  f"start latency p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms  "
                  f"{r['rows_per_commit']:6.0f} rows/commit")
    if "restart" in only:
        if only != {"restart"}:
            # A fresh process, so the resident memory measured is the restart's alone.
            subprocess.run([sys.executable, __file__, "--only", "restart", "--restart-jobs",
                            str(args.restart_jobs), "--quiet"], check=True)
            return
        r = asyncio.run(_restart(args.restart_jobs))
        print(f"{'restart with ' + format(args.restart_jobs, ',') + ' waiting jobs':52s} "
              f"ready in {r['ready_s']:.2f} s, RSS {r['rss_mb']:.0f} MB "
              f"(+{r['rss_delta_mb']:.0f} MB for the jobs)")


if __name__ == "__main__":
    main()
