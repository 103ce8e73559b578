"""The SQLite journal writer: one task, group commit.

Every change the index makes to a journaled job marks the job dirty. The writer takes everything
dirty at once, writes it in one transaction (a job changed three times since the last commit is
written once, in its latest state) and resolves one future for the whole batch. Callers that must
not return before their change is durable await that future; those that need not (progress) don't.

A batch that holds a money-tier job commits with `synchronous=FULL` (the WAL is fsynced before the
commit returns); other batches use NORMAL, which survives a process crash but not a power loss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite

from tickq.engine.job import Job
from tickq.engine.states import FINAL_STATES
from tickq.errors import StoreClosedError, TickqError
from tickq.storage.index import OP_DELETE, OP_INSERT

log = logging.getLogger(__name__)

INSERT_SQL = (
    "INSERT INTO jobs (id, queue, type, data, tenant_id, user_id, priority, state, attempts, "
    "max_attempts, run_at, lease_until, idempotency_key, progress, result, errors, created_at, "
    "started_at, finished_at, expires_at, callback_url, ordering_key, stalls, key_until) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
UPDATE_SQL = (
    "UPDATE jobs SET state=?, attempts=?, max_attempts=?, run_at=?, lease_until=?, progress=?, "
    "result=?, errors=?, started_at=?, finished_at=?, stalls=?, key_until=? WHERE id=?"
)
DELETE_SQL = "DELETE FROM jobs WHERE id=?"


def insert_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.queue, j.type, j.data_json, j.tenant_id, j.user_id, j.priority, j.state.value,
            j.attempts, j.max_attempts, j.run_at, j.lease_until, j.idempotency_key, j.progress,
            j.result_json, j.errors_json, j.created_at, j.started_at, j.finished_at, j.expires_at,
            j.callback_url, j.ordering_key, j.stalls, j.key_until)


def update_row(j: Job) -> tuple[Any, ...]:
    return (j.state.value, j.attempts, j.max_attempts, j.run_at, j.lease_until, j.progress,
            j.result_json, j.errors_json, j.started_at, j.finished_at, j.stalls, j.key_until, j.id)


class JournalBrokenError(TickqError):
    code = "journal_unavailable"


class Journal:
    def __init__(self, conn: aiosqlite.Connection, fsync_queues: set[str], *,
                 on_committed: Callable[[list[Job]], None] | None = None) -> None:
        self._conn = conn
        self._fsync_queues = fsync_queues
        self._on_committed = on_committed
        #: job id -> (job, op); an insert stays an insert however often the job changes after it
        self._dirty: dict[str, tuple[Job, int]] = {}
        self._fsync = False
        self._extra: list[tuple[str, Sequence[Any]]] = []
        self._batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sync_full: bool | None = None
        self.broken: BaseException | None = None
        self.closed = False
        #: commits so far and the jobs they carried, for metrics and benchmarks
        self.commits = 0
        self.rows = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tickq-journal")

    def mark(self, job: Job, op: int) -> None:
        """Record that `job` changed (called synchronously by the index)."""
        jid = job.id
        prev = self._dirty.get(jid)
        if prev is None:
            self._dirty[jid] = (job, op)
        elif op == OP_DELETE:
            if prev[1] == OP_INSERT:
                del self._dirty[jid]
            else:
                self._dirty[jid] = (job, OP_DELETE)
        # an update after an insert or update: the row is built from the job at flush time
        if job.queue in self._fsync_queues:
            self._fsync = True
        self._wake.set()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> asyncio.Future[None]:
        """Run one more statement inside the next commit."""
        self._check()
        self._extra.append((sql, params))
        self._fsync = True
        self._wake.set()
        return self._batch

    @property
    def pending(self) -> asyncio.Future[None] | None:
        """The future of the commit that will carry what is dirty now, if anything is."""
        if not self._dirty and not self._extra:
            return None
        self._check()
        return self._batch

    def _check(self) -> None:
        if self.broken is not None:
            raise JournalBrokenError(f"the journal cannot be written: {self.broken}")
        if self.closed:
            raise StoreClosedError("the store is closed")

    async def flush(self) -> None:
        """Wait until everything marked so far is committed."""
        fut = self.pending
        if fut is not None:
            await asyncio.shield(fut)

    async def close(self) -> None:
        if self._task is None:
            return
        try:
            await self.flush()
        except TickqError:
            pass
        self.closed = True
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._dirty and not self._extra:
                continue
            dirty, self._dirty = self._dirty, {}
            extra, self._extra = self._extra, []
            fsync, self._fsync = self._fsync, False
            fut, self._batch = self._batch, asyncio.get_running_loop().create_future()
            inserts: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            deletes: list[tuple[str]] = []
            for job, op in dirty.values():
                if op == OP_INSERT:
                    inserts.append(insert_row(job))
                elif op == OP_DELETE:
                    deletes.append((job.id,))
                else:
                    updates.append(update_row(job))
            try:
                await self._commit(fsync, inserts, updates, deletes, extra)
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except Exception as exc:
                log.exception("journal commit failed", extra={"event": "journal_failed"})
                self.broken = exc
                fut.set_exception(JournalBrokenError(f"the journal cannot be written: {exc}"))
                fut.exception()  # retrieved here; awaiting callers still get it
                if self._batch is not None and not self._batch.done():
                    self._batch.set_exception(JournalBrokenError(str(exc)))
                    self._batch.exception()
                return
            self.commits += 1
            self.rows += len(dirty)
            fut.set_result(None)
            if self._on_committed is not None:
                self._on_committed([j for j, op in dirty.values()
                                    if op != OP_DELETE and j.state in FINAL_STATES])

    async def _commit(self, fsync: bool, inserts: list[tuple[Any, ...]],
                      updates: list[tuple[Any, ...]], deletes: list[tuple[str]],
                      extra: list[tuple[str, Sequence[Any]]]) -> None:
        conn = self._conn
        if self._sync_full is not fsync:
            await conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._sync_full = fsync
        try:
            if inserts:
                await conn.executemany(INSERT_SQL, inserts)
            if updates:
                await conn.executemany(UPDATE_SQL, updates)
            if deletes:
                await conn.executemany(DELETE_SQL, deletes)
            for sql, params in extra:
                await conn.execute(sql, params)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
