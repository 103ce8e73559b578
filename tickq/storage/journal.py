"""The SQLite journal writer: one task, group commit.

Every change the index makes to a journaled job marks the job dirty. The writer takes everything
dirty at once, writes it in one transaction (a job changed three times since the last commit is
written once, in its latest state) and resolves one future for the whole batch. Callers that must
not return before their change is durable await that future; those that need not (progress) don't.

Rows of other tables (analytics events, reports) ride in the same commits: `write` adds rows for
one more `executemany`, and rows of one statement from many callers go out as one.

A batch that holds a money-tier job commits with `synchronous=FULL` (the WAL is fsynced before the
commit returns); other batches use NORMAL, which survives a process crash but not a power loss.

Where the rows are written is the `Committer`'s business. `ProcessCommitter` (the default) hands
each batch to a writer process (`journal_process.py`): binding rows holds the GIL, several
microseconds per row, and in a separate process that work runs on another core instead of
delaying the event loop. `InlineCommitter` writes on the loop's thread and runs only the COMMIT
(where the fsync happens, GIL released) on a worker thread; it is the fallback where a process
cannot be started. Measured here, running `executemany` on a worker thread of the engine's own
process while the loop was busy managed about 2,500 rows/s (the sqlite3 module releases the GIL
around every row's step and then waits up to the switch interval to get it back); on the loop's
thread it ran at about 160,000 rows/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tickq.engine.job import Job
from tickq.engine.states import FINAL_STATES, JobState
from tickq.errors import StoreClosedError, TickqError
from tickq.storage.base import AnalyticsEvent, Report
from tickq.storage.committers import Committer, JournalBrokenError, Statement
from tickq.storage.index import OP_CLAIM, OP_COMPLETE, OP_DELETE, OP_INSERT, OP_UPDATE

log = logging.getLogger(__name__)

INSERT_SQL = (
    "INSERT INTO jobs (id, queue, type, data, tenant_id, user_id, priority, state, attempts, "
    "max_attempts, run_at, lease_until, idempotency_key, progress, result, errors, created_at, "
    "started_at, finished_at, expires_at, callback_url, ordering_key, stalls, key_until) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
#: a job as enqueued: the columns a fresh waiting job has; the rest keep their defaults (NULL/0)
INSERT_NEW_SQL = (
    "INSERT INTO jobs (id, queue, type, data, tenant_id, user_id, priority, state, attempts, "
    "max_attempts, run_at, idempotency_key, created_at, expires_at, callback_url, ordering_key) "
    "VALUES (?,?,?,?,?,?,?,?,0,?,?,?,?,?,?,?)"
)
CLAIM_SQL = "UPDATE jobs SET state=?, attempts=?, lease_until=?, started_at=? WHERE id=?"
COMPLETE_SQL = ("UPDATE jobs SET state='completed', lease_until=NULL, progress=100, result=?, "
                "finished_at=?, key_until=? WHERE id=?")
UPDATE_SQL = (
    "UPDATE jobs SET state=?, attempts=?, max_attempts=?, run_at=?, lease_until=?, progress=?, "
    "result=?, errors=?, started_at=?, finished_at=?, stalls=?, key_until=?, expires_at=? "
    "WHERE id=?"
)
DELETE_SQL = "DELETE FROM jobs WHERE id=?"
#: analytics events: an id already recorded is skipped (a rerun job appends its event again)
EVENT_INSERT_SQL = (
    "INSERT OR IGNORE INTO analytics_events (id, tenant_id, event_type, venue_id, user_id, "
    "event_id, data, occurred_at, recorded_at) VALUES (?,?,?,?,?,?,?,?,?)"
)
#: reports: a rerun of the job that made one replaces it
REPORT_PUT_SQL = (
    "INSERT OR REPLACE INTO reports (id, tenant_id, user_id, venue_id, report_type, format, "
    "period_start, period_end, created_at, content_type, size, job_id, content) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def insert_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.queue, j.type, j.data_json, j.tenant_id, j.user_id, j.priority, j.state.value,
            j.attempts, j.max_attempts, j.run_at, j.lease_until, j.idempotency_key, j.progress,
            j.result_json, j.errors_json, j.created_at, j.started_at, j.finished_at, j.expires_at,
            j.callback_url, j.ordering_key, j.stalls, j.key_until)


def insert_new_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.queue, j.type, j.data_json, j.tenant_id, j.user_id, j.priority, "waiting",
            j.max_attempts, j.run_at, j.idempotency_key, j.created_at, j.expires_at,
            j.callback_url, j.ordering_key)


def is_new(j: Job) -> bool:
    return j.state is JobState.WAITING and j.attempts == 0 and j.errors_json is None and (
        j.stalls == 0)


def claim_row(j: Job) -> tuple[Any, ...]:
    return (j.state.value, j.attempts, j.lease_until, j.started_at, j.id)


def complete_row(j: Job) -> tuple[Any, ...]:
    return (j.result_json, j.finished_at, j.key_until, j.id)


def event_row(e: AnalyticsEvent) -> tuple[Any, ...]:
    return (e.id, e.tenant_id, e.event_type, e.venue_id, e.user_id, e.event_id, e.data_json,
            e.occurred_at, e.recorded_at)


def report_row(r: Report) -> tuple[Any, ...]:
    return (r.id, r.tenant_id, r.user_id, r.venue_id, r.report_type, r.format, r.period_start,
            r.period_end, r.created_at, r.content_type, r.size, r.job_id, r.content)


def update_row(j: Job) -> tuple[Any, ...]:
    return (j.state.value, j.attempts, j.max_attempts, j.run_at, j.lease_until, j.progress,
            j.result_json, j.errors_json, j.started_at, j.finished_at, j.stalls, j.key_until,
            j.expires_at, j.id)


#: called after each commit with its latency (seconds from handing the batch to the committer
#: to its answer) and the number of jobs it carried
CommitHook = Callable[[float, int], None]


class _Batch:
    __slots__ = ("dirty", "done", "fut", "submitted")

    def __init__(self, fut: asyncio.Future[None], dirty: dict[str, tuple[Job, int]],
                 done: asyncio.Future[None], submitted: float) -> None:
        self.fut = fut        # what callers of this batch await
        self.dirty = dirty    # what it carries
        self.done = done      # the committer's answer
        self.submitted = submitted  # perf_counter() when it was handed to the committer


class Journal:
    def __init__(self, committer: Committer, fsync_queues: set[str], *,
                 on_committed: Callable[[list[Job]], None] | None = None) -> None:
        self._committer = committer
        self._fsync_queues = fsync_queues
        self._on_committed = on_committed
        #: job id -> (job, op); an insert stays an insert however often the job changes after it,
        #: and a claim followed by any other change becomes a full update
        self._dirty: dict[str, tuple[Job, int]] = {}
        self._fsync = False
        self._extra: list[tuple[str, Sequence[Any]]] = []
        #: sql -> rows for one `executemany` each, gathered from every `write` since the last
        #: commit (a hundred callers appending events make one statement)
        self._appended: dict[str, list[Sequence[Any]]] = {}
        self._batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: submitted batches not yet committed, oldest first
        self._inflight: deque[_Batch] = deque()
        self.broken: BaseException | None = None
        self.closed = False
        #: commits so far and the jobs they carried, for metrics and benchmarks
        self.commits = 0
        self.rows = 0
        #: the metrics' view of each commit (latency, batch size); None: nobody is looking
        self.on_commit: CommitHook | None = None

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
        elif prev[1] != OP_INSERT and prev[1] != op:
            self._dirty[jid] = (job, OP_UPDATE)
        # otherwise the row is built from the job's latest state at flush time
        if job.queue in self._fsync_queues:
            self._fsync = True
        self._wake.set()

    def mark_new(self, jobs: Sequence[Job]) -> None:
        """`mark(job, OP_INSERT)` for each of a batch's new jobs (fresh ids: nothing is marked
        for them yet), at one call per batch."""
        if not jobs:
            return
        dirty, fsync_queues = self._dirty, self._fsync_queues
        for job in jobs:
            dirty[job.id] = (job, OP_INSERT)
            if job.queue in fsync_queues:
                self._fsync = True
        self._wake.set()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> asyncio.Future[None]:
        """Run one more statement inside the next commit."""
        self._check()
        self._extra.append((sql, params))
        self._fsync = True
        self._wake.set()
        return self._batch

    def write(self, sql: str, rows: Sequence[Sequence[Any]], *, fsync: bool = False
              ) -> asyncio.Future[None]:
        """Rows for `sql` (run with `executemany`) inside the next commit. Unlike `execute`,
        the commit is fsynced only when `fsync` is asked for (or something else in it needs
        it): rows written this way are kept as durably as the communication tier."""
        self._check()
        self._appended.setdefault(sql, []).extend(rows)
        if fsync:
            self._fsync = True
        self._wake.set()
        return self._batch

    @property
    def pending(self) -> asyncio.Future[None] | None:
        """The future of the commit that will carry what is dirty now, if anything is."""
        if not self._dirty and not self._extra and not self._appended:
            return None
        self._check()
        return self._batch

    def _check(self) -> None:
        if self.broken is not None:
            raise JournalBrokenError(f"the journal cannot be written: {self.broken}")
        if self.closed:
            raise StoreClosedError("the store is closed")

    async def flush(self) -> None:
        """Wait until everything marked so far is committed, batches in flight included."""
        futs = [b.fut for b in self._inflight]
        pending = self.pending
        if pending is not None:
            futs.append(pending)
        for fut in futs:
            await asyncio.shield(fut)

    def housekeep(self, vacuum_pages: int) -> asyncio.Future[dict[str, int]]:
        """Vacuum free pages and checkpoint the WAL on the writer's own connection, between
        two commits (`journal_process.housekeep`), so it never waits on the writer nor the
        writer on it; the future has its report."""
        self._check()
        return self._committer.housekeep(vacuum_pages)

    async def close(self) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TickqError):
            await self.flush()
        self.closed = True
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        await self._committer.close()

    async def _run(self) -> None:
        limit = self._committer.max_inflight
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._inflight) >= limit:
                self._slot.clear()
                await self._slot.wait()
            if self.broken is not None:
                return
            if not self._dirty and not self._extra and not self._appended:
                continue
            self._submit()

    def _submit(self) -> None:
        dirty, self._dirty = self._dirty, {}
        extra, self._extra = self._extra, []
        written, self._appended = self._appended, {}
        fsync, self._fsync = self._fsync, False
        fut, self._batch = self._batch, asyncio.get_running_loop().create_future()
        rows: dict[str, list[tuple[Any, ...]]] = {
            INSERT_NEW_SQL: [], INSERT_SQL: [], CLAIM_SQL: [], COMPLETE_SQL: [],
            UPDATE_SQL: [], DELETE_SQL: []}
        new, full, claims, completes, updates, deletes = rows.values()
        for job, op in dirty.values():
            if op == OP_CLAIM:
                claims.append(claim_row(job))
            elif op == OP_COMPLETE:
                completes.append(complete_row(job))
            elif op == OP_INSERT:
                if is_new(job):
                    new.append(insert_new_row(job))
                else:
                    full.append(insert_row(job))
            elif op == OP_DELETE:
                deletes.append((job.id,))
            else:
                updates.append(update_row(job))
        statements: list[Statement] = [(sql, batch, True) for sql, batch in rows.items() if batch]
        statements.extend((sql, batch, True) for sql, batch in written.items())
        statements.extend((sql, params, False) for sql, params in extra)
        submitted = time.perf_counter()
        batch = _Batch(fut, dirty, self._committer.submit(fsync, statements), submitted)
        self._inflight.append(batch)
        batch.done.add_done_callback(lambda _: self._finished(batch))

    def _finished(self, batch: _Batch) -> None:
        """A batch's answer arrived (answers come in submission order)."""
        if self._inflight and self._inflight[0] is batch:
            self._inflight.popleft()
        self._slot.set()
        exc = None if batch.done.cancelled() else batch.done.exception()
        if batch.done.cancelled() or exc is not None:
            self._fail(exc or StoreClosedError("the journal was closed"), batch)
            return
        self.commits += 1
        self.rows += len(batch.dirty)
        if not batch.fut.done():
            batch.fut.set_result(None)
        if self.on_commit is not None:
            try:
                self.on_commit(time.perf_counter() - batch.submitted, len(batch.dirty))
            except Exception:
                log.exception("commit hook failed", extra={"event": "commit_hook_failed"})
        if self._on_committed is not None:
            later = self._dirty
            self._on_committed([
                j for jid, (j, op) in batch.dirty.items()
                if op != OP_DELETE and j.state in FINAL_STATES and jid not in later
                and not any(jid in b.dirty for b in self._inflight)])

    def _fail(self, exc: BaseException, batch: _Batch) -> None:
        if self.broken is None:
            log.error("journal commit failed: %s", exc, extra={"event": "journal_failed"})
            self.broken = exc
        error = JournalBrokenError(f"the journal cannot be written: {exc}")
        for fut in [batch.fut, *(b.fut for b in self._inflight), self._batch]:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved here; awaiting callers still get it
        self._wake.set()
