"""Three engine processes on one PostgreSQL schema (`pg_node_child.py`), sharing 20,000 jobs
whose processor records every execution in a file per process.

Without failures every job runs exactly once. With one node SIGKILLed mid-run no job is lost,
and the only jobs that run twice are ones the killed node held: their claim ended with its
session, so another node ran them again and counted a stall on them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pgkit import pg

import tickq
from tickq.storage.postgres import PostgresStore


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("pg_node_child.py")
N = 20_000
NODES = 3
BATCH = 2_000
#: how long the jobs may take to run (the test fails past it rather than hanging)
RUN_TIMEOUT_S = 45.0


class Cluster:
    """The node processes of one test, and the files they record executions in."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.outs = [folder / f"node{i}.log" for i in range(NODES)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def launch(self) -> None:
        for out in self.outs:
            self.procs.append(subprocess.Popen([sys.executable, str(CHILD), self.url, str(out)],
                                               stdout=subprocess.PIPE))

    async def start(self) -> None:
        """Launch the nodes and wait until each processes."""
        self.launch()
        loop = asyncio.get_running_loop()
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 30)
            assert line.startswith(b"started"), line

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def executions(self) -> list[list[tuple[str, int]]]:
        """Per node, (job id, stalls seen by the run) of every execution it recorded."""
        out = []
        for path in self.outs:
            lines = path.read_text().splitlines() if path.exists() else []
            out.append([(p[0], int(p[1])) for p in (line.split() for line in lines)])
        return out


async def enqueue(url: str) -> list[str]:
    """The N jobs, inserted in batches through a store of the test's own (another node)."""
    maker = tickq.Engine(PostgresStore(url))
    maker.registry.add_type(tickq.JobType(name="record", queue="communication"))
    producer = PostgresStore(url)
    await producer.open({q.name: q for q in maker.registry.queues}, time.time())
    ids: list[str] = []
    try:
        for start in range(0, N, BATCH):
            jobs = [maker.build(tickq.JobSpec(type="record", data={"i": i}))
                    for i in range(start, start + BATCH)]
            await producer.job_insert_many(jobs, time.time())
            ids.extend(j.id for j in jobs)
    finally:
        await producer.close()
    return ids


async def completed(url: str) -> int:
    rows = await pg.table_rows(url, "SELECT count(*) FROM jobs WHERE state = 'completed'")
    return int(rows[0][0])


async def wait_completed(url: str, count: int, deadline: float) -> None:
    while await completed(url) < count:
        assert time.monotonic() < deadline, f"fewer than {count} jobs completed in time"
        await asyncio.sleep(0.1)


async def test_three_nodes_run_each_of_20000_jobs_exactly_once(url: str, tmp_path: Path) -> None:
    cluster = Cluster(url, tmp_path)
    try:
        await cluster.start()
        t0 = time.monotonic()
        ids = await enqueue(url)
        await wait_completed(url, N, t0 + RUN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
    finally:
        cluster.stop()
    per_node = cluster.executions()
    runs = Counter(job_id for node in per_node for job_id, _ in node)
    print(f"{N} jobs on {NODES} nodes in {elapsed:.1f}s ({N / elapsed:.0f} jobs/s), "
          f"per node {[len(n) for n in per_node]}")
    assert set(runs) == set(ids) and len(ids) == N
    assert max(runs.values()) == 1
    assert all(per_node)  # every node took part
    rows = await pg.table_rows(url, "SELECT state, stalls, count(*) FROM jobs "
                                    "GROUP BY state, stalls")
    assert [tuple(r) for r in rows] == [("completed", 0, N)]


async def test_a_node_killed_mid_run_loses_nothing_and_repeats_only_its_stalled_jobs(
        url: str, tmp_path: Path) -> None:
    cluster = Cluster(url, tmp_path)
    try:
        await cluster.start()
        t0 = time.monotonic()
        ids = await enqueue(url)
        # Killed after a few hundred runs, the moment it records one more: that run (and any
        # started with it) is still held, so the kill leaves jobs mid-run.
        victim_log = cluster.outs[NODES - 1]
        seen = 0
        while True:
            size = victim_log.stat().st_size if victim_log.exists() else 0
            if seen >= 300 * 30 and size > seen:
                break
            seen = size
            assert time.monotonic() < t0 + RUN_TIMEOUT_S, "the node to kill ran too little"
            await asyncio.sleep(0.001)
        victim = cluster.procs[NODES - 1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        done_at_kill = await completed(url)
        await wait_completed(url, N, t0 + RUN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
    finally:
        cluster.stop()
    per_node = cluster.executions()
    runs = Counter(job_id for node in per_node for job_id, _ in node)
    killed = {job_id for job_id, _ in per_node[NODES - 1]}
    repeats = {job_id for job_id, count in runs.items() if count > 1}
    stalled = {r[0]: r[1] for r in await pg.table_rows(
        url, "SELECT id, stalls FROM jobs WHERE stalls > 0")}
    print(f"{N} jobs, node {NODES - 1} killed at {done_at_kill} completed, all done in "
          f"{elapsed:.1f}s; {len(repeats)} ran twice, {len(stalled)} stalled")
    assert set(runs) == set(ids) and len(ids) == N  # none lost
    assert await completed(url) == N
    assert max(runs.values()) <= 2
    assert repeats <= killed  # each repeat had started on the killed node ...
    assert repeats <= set(stalled)  # ... and shows as a stall
    assert stalled  # the kill did leave jobs mid-run
    for node in per_node[:NODES - 1]:  # the second run of a repeat saw the stall
        assert all(stalls >= 1 for job_id, stalls in node if job_id in repeats)
