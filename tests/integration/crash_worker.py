"""A process the crash test kills: it enqueues and runs money jobs that charge a fake provider.

    crash_worker.py JOURNAL_DB PROVIDER_DB --enqueue N [--key-prefix P]   enqueue N, then run them
    crash_worker.py JOURNAL_DB PROVIDER_DB --drain                        run what is left, exit

The provider is a separate SQLite file that behaves like a payment provider honouring an
idempotency key: in one transaction it looks the key up, records the charge only if the key is new,
and logs every request it received (key, job id, attempt) so repeated executions stay visible.

stdout carries the protocol the test reads:
    started <pid> stalled=<jobs found mid-run and put back to waiting>
    ack <job id> <idempotency key> <1 if created, 0 if the key already had a job>
    drained stalled=<n> completed=<n>
An `ack` line is written only after `enqueue_many` returned, which is the acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import threading
import time
import uuid
from contextlib import closing
from typing import Any

import tickq

CHARGE = tickq.JobType(name="charge", queue="money", priority=9, timeout_s=10.0,
                       provider="test-psp", description="Charge through the fake provider")

#: simulated provider latency before and after the charge is recorded, so that a kill often
#: lands between the side effect and the job's completion
REQUEST_S = 0.002
RESPONSE_S = 0.003

PROVIDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT NOT NULL,  -- deliberately not UNIQUE: the test counts duplicates itself
    charge_id       TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    at              REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_key ON charges (idempotency_key);
CREATE TABLE IF NOT EXISTS executions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    replayed        INTEGER NOT NULL,
    pid             INTEGER NOT NULL,
    at              REAL NOT NULL
);
"""


class Provider:
    """The fake payment provider. Processors run in worker threads; each gets its connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        with closing(self._connect()) as conn:
            conn.executescript(PROVIDER_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def charge(self, key: str, job_id: str, attempt: int, amount: int) -> tuple[str, bool]:
        """(charge id, whether this request replayed an earlier charge with the same key)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT charge_id FROM charges WHERE idempotency_key=?",
                               (key,)).fetchone()
            replayed = row is not None
            charge_id = str(row[0]) if row else f"ch_{uuid.uuid4().hex[:16]}"
            now = time.time()
            if not replayed:
                conn.execute("INSERT INTO charges VALUES (?,?,?,?,?)",
                             (key, charge_id, job_id, amount, now))
            conn.execute("INSERT INTO executions (idempotency_key, job_id, attempt, replayed, pid, "
                         "at) VALUES (?,?,?,?,?,?)",
                         (key, job_id, attempt, int(replayed), os.getpid(), now))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return charge_id, replayed


def make_processor(provider: Provider) -> Any:
    def charge(job: tickq.Job) -> dict[str, Any]:
        key = job.idempotency_key
        if key is None:
            raise tickq.PermanentError("a charge needs an idempotency key")
        time.sleep(REQUEST_S)
        charge_id, replayed = provider.charge(key, job.id, job.attempts, int(job.data["amount"]))
        time.sleep(RESPONSE_S)
        return {"charge_id": charge_id, "replayed": replayed}

    return charge


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def enqueue(engine: tickq.Engine, n: int, batch: int, prefix: str) -> None:
    for start in range(0, n, batch):
        specs = [tickq.JobSpec(type="charge", data={"amount": 100 + i, "order": i},
                               idempotency_key=f"{prefix}-{i}")
                 for i in range(start, min(n, start + batch))]
        done = await engine.enqueue_many(specs)
        # Only now, with enqueue_many returned, is the batch acknowledged.
        sys.stdout.write("".join(f"ack {e.job.id} {e.job.idempotency_key} {int(e.created)}\n"
                                 for e in done))
        sys.stdout.flush()
        await asyncio.sleep(0.005)


async def drain(engine: tickq.Engine, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = await engine.counts("money")
        if counts.waiting == 0 and counts.active == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("provider")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--enqueue", type=int, metavar="N")
    mode.add_argument("--drain", action="store_true")
    parser.add_argument("--key-prefix", default="order")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--drain-timeout", type=float, default=25.0)
    args = parser.parse_args()

    engine = tickq.Engine(tickq.open_store(f"sqlite:///{args.journal}"),
                          concurrency={"money": 10})
    engine.register(CHARGE, make_processor(Provider(args.provider)))
    async with engine:
        emit(f"started {os.getpid()} stalled={engine.stats['stalled']}")
        if args.enqueue is not None:
            await enqueue(engine, args.enqueue, args.batch, args.key_prefix)
        drained = await drain(engine, args.drain_timeout)
        emit(f"drained stalled={engine.stats['stalled']} completed={engine.stats['completed']}"
             if drained else "not drained")
    return 0 if drained else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
