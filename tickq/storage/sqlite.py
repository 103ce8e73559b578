"""`sqlite:///path`: the embedded default. Scheduling in memory (`JobIndex`), SQLite (WAL) as the
journal that makes it durable, one process per file.

Reads of live jobs come from memory; finished jobs are dropped from memory once their final state
is committed and are read back from the file on demand through a second connection (WAL lets it
read while the writer commits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import gc
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import aiosqlite
import orjson

from tickq.engine.gate import Gate
from tickq.engine.job import Job, is_partial
from tickq.engine.outcome import Settle
from tickq.engine.queues import Durability, QueueConfig, QueueCounts
from tickq.engine.states import FINAL_STATES, JobState
from tickq.errors import (
    IllegalTransitionError,
    JobNotFoundError,
    StoreClosedError,
    StoreLockedError,
)
from tickq.storage import sqlite_schedules
from tickq.storage.base import (
    AlertRecord,
    AnalyticsEvent,
    FetchResult,
    InsertResult,
    JobQuery,
    NewAlert,
    OpenReport,
    PruneRule,
    QueueSnapshot,
    Report,
    ReportInfo,
    Schedule,
)
from tickq.storage.committers import Committer, InlineCommitter, ProcessCommitter
from tickq.storage.index import OP_UPDATE, JobIndex, matches
from tickq.storage.journal import (
    EVENT_INSERT_SQL,
    REPORT_PUT_SQL,
    Journal,
    event_row,
    report_row,
)
from tickq.storage.record_rows import (
    ALERT_COLUMNS,
    ALERT_FIELDS,
    EVENT_COLUMNS,
    REPORT_COLUMNS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_FIELDS,
    alert_from_row,
    event_from_row,
    report_fields,
    snapshot_from_row,
    snapshot_row,
)
from tickq.storage.schedule_table import ScheduleTable
from tickq.storage.sql_scripts import numbered_scripts

log = logging.getLogger(__name__)

COLUMNS = ("id, queue, type, data, tenant_id, user_id, priority, state, attempts, max_attempts, "
           "run_at, lease_until, idempotency_key, progress, result, errors, created_at, "
           "started_at, finished_at, expires_at, callback_url, ordering_key, stalls, key_until")

_STATES = {s.value: s for s in JobState}


def job_from_row(r: Sequence[Any]) -> Job:
    return Job(id=r[0], queue=r[1], type=r[2], data_json=r[3], tenant_id=r[4], user_id=r[5],
               priority=r[6], state=_STATES[r[7]], attempts=r[8], max_attempts=r[9], run_at=r[10],
               lease_until=r[11], idempotency_key=r[12], progress=r[13], result_json=r[14],
               errors_json=r[15], created_at=r[16], started_at=r[17], finished_at=r[18],
               expires_at=r[19], callback_url=r[20], ordering_key=r[21], stalls=r[22],
               key_until=r[23])


#: what a restart reads of each live job: enough to schedule it. The rest (REST_COLUMNS) is read
#: when the job is first claimed or looked at, because decoding every column of a million rows
#: was most of a restart's time.
SCHEDULE_COLUMNS = ("id", "queue", "priority", "state", "run_at", "tenant_id", "idempotency_key")
REST_COLUMNS = ("type", "data", "user_id", "attempts", "max_attempts", "lease_until", "progress",
                "result", "errors", "created_at", "started_at", "finished_at", "expires_at",
                "callback_url", "ordering_key", "stalls", "key_until")
_ATTR = {"data": "data_json", "result": "result_json", "errors": "errors_json"}


def _make_bulk_loader() -> Callable[[Iterable[Sequence[Any]], dict[str, str]], Iterator[Job]]:
    """Partial jobs (see `is_partial`) from rows of SCHEDULE_COLUMNS, for a million at start-up.

    Straight-line attribute sets instead of keyword arguments (about three times faster), and
    the strings that repeat on every row (queue, tenant) shared through `names`: sqlite3 makes a
    new string for every row, a couple of hundred megabytes of copies of "money" per million.
    """
    shared = {"queue", "tenant_id"}
    lines = ["def load(rows, names):", "    for r in rows:", "        j = new(Job)"]
    for i, col in enumerate(SCHEDULE_COLUMNS):
        if col == "state":
            value = f"STATES[r[{i}]]"
        elif col in shared:
            value = f"names.setdefault(r[{i}], r[{i}]) if r[{i}] is not None else None"
        else:
            value = f"r[{i}]"
        lines.append(f"        j.{col} = {value}")
    lines += [f"        j.{_ATTR.get(col, col)} = None" for col in REST_COLUMNS]
    lines += ["        j.claim_token = 0", "        yield j"]
    namespace: dict[str, Any] = {"Job": Job, "new": object.__new__, "STATES": _STATES}
    exec("\n".join(lines), namespace)
    loader: Callable[[Iterable[Sequence[Any]], dict[str, str]], Iterator[Job]] = namespace["load"]
    return loader


def _make_filler() -> Callable[[Job, Sequence[Any]], None]:
    lines = ["def fill(j, r):"]
    lines += [f"    j.{_ATTR.get(col, col)} = r[{i}]" for i, col in enumerate(REST_COLUMNS)]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    filler: Callable[[Job, Sequence[Any]], None] = namespace["fill"]
    return filler


_fill = _make_filler()
_REST_SQL = f"SELECT {', '.join(REST_COLUMNS)} FROM jobs WHERE id=?"
load_jobs = _make_bulk_loader()


def migrations() -> list[tuple[int, str]]:
    """The numbered schema scripts, in order."""
    return numbered_scripts("sqlite")


class SqliteStore:
    def __init__(self, path: str, *, writer: str = "process") -> None:
        if writer not in ("process", "inline"):
            raise ValueError("writer must be 'process' or 'inline'")
        self.path = path
        #: "process": commits run in a writer process on another core; "inline": on this one
        self.writer = writer
        self.on_available: Callable[[str], None] | None = None
        self._index: JobIndex | None = None
        self._journal: Journal | None = None
        self._reader: aiosqlite.Connection | None = None
        #: reads the rest of partial records, on the loop's thread (a point query by key, a few
        #: microseconds; a hop to another thread would cost more than the read)
        self._filler: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._paused: set[str] = set()
        self._memory_queues: set[str] = set()
        #: every schedule (they are few); changes are written through the journal
        self._schedules = ScheduleTable()
        #: the highest alert id given so far (ids are assigned here: one process owns the file)
        self._alert_seq = 0

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def index(self) -> JobIndex:
        if self._index is None:
            raise StoreClosedError("the store is not open")
        return self._index

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise StoreClosedError("the store is not open")
        return self._journal

    def _lock(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is in use by process {holder}; one tickq process owns a SQLite "
                "journal at a time (use PostgreSQL to run several)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def open(self, queues: Mapping[str, QueueConfig], now: float) -> OpenReport:
        if self._index is not None:
            raise StoreClosedError("the store is already open")
        self._lock()
        committer: Committer | None = None
        try:
            self._migrate()
            self._alert_seq = self._last_alert_id()
            self._reader = await self._connect()
            self._filler = sqlite3.connect(self.path, check_same_thread=False)
            self._filler.execute("PRAGMA query_only=1")
            await self._reader.execute("PRAGMA query_only=1")
            index = JobIndex(queues)
            self._memory_queues = {n for n, q in queues.items()
                                   if q.durability is Durability.MEMORY}
            loaded, stalled = self._load(index, now)
            self._schedules.load(self._read_schedules())
            fsync = {n for n, q in queues.items() if q.durability is Durability.FSYNC}
            committer = (ProcessCommitter(self.path) if self.writer == "process"
                         else InlineCommitter(self.path))
            await committer.start()
            journal = Journal(committer, fsync, on_committed=self._committed)
            journal.start()
            self._index, self._journal = index, journal
            index.on_change = self._mark
            index.on_insert = self._mark_new
            index.hydrate = self._hydrate
            for job in stalled:
                self._hydrate(job)
                index.stall(job, now, "process stopped while the job was running")
            await journal.flush()
            async with self._reader.execute("SELECT name FROM queue_state WHERE paused=1") as cur:
                self._paused = {r[0] async for r in cur}
        except BaseException:
            if self._journal is not None:
                await self._journal.close()
            elif committer is not None:
                await committer.close()
            await self._close_connections()
            self._index = self._journal = None
            self._unlock()
            raise
        return OpenReport(stalled=stalled, loaded=loaded)

    def _migrate(self) -> None:
        """Bring the file's schema up to date, each numbered script in its own transaction."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # A new file: free pages can then be given back a few at a time by the
                # journal's housekeeping (incremental_vacuum). It must be chosen before the
                # file has a header, which setting the WAL mode writes.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            row = conn.execute("PRAGMA user_version").fetchone()
            version = int(row[0]) if row else 0
            for number, script in migrations():
                if number > version:
                    conn.executescript(
                        f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
                    log.info("schema migrated", extra={"event": "migrated", "version": number})
        finally:
            conn.close()

    def _read_schedules(self) -> list[Schedule]:
        conn = sqlite3.connect(self.path)
        try:
            return sqlite_schedules.load_schedules(conn)
        finally:
            conn.close()

    def _last_alert_id(self) -> int:
        """The highest alert id ever given: sqlite_sequence remembers it after its row is
        gone."""
        conn = sqlite3.connect(self.path)
        try:
            row = conn.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence "
                "WHERE name='alert_history'), 0), COALESCE((SELECT MAX(id) FROM alert_history), "
                "0))").fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    def _load(self, index: JobIndex, now: float) -> tuple[int, list[Job]]:
        """Rebuild the index from the journal. Returns (live jobs loaded, jobs that were active).

        Runs on the loop's thread with a plain connection, before the store takes any work:
        handing a million rows across threads in batches cost more than reading them here."""
        conn = sqlite3.connect(self.path)
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a million new objects would otherwise trigger many useless collections
        try:
            memory = self._memory_queues
            rows = conn.execute(
                f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM jobs WHERE finished_at IS NULL")
            jobs = list(load_jobs(rows, {}))
            if memory:
                jobs = [j for j in jobs if j.queue not in memory]
            before = len(index.jobs)
            stalled = index.load_many(jobs, now)
            loaded = len(index.jobs) - before
            for queue, state, n in conn.execute(
                    "SELECT queue, state, COUNT(*) FROM jobs WHERE finished_at IS NOT NULL "
                    "GROUP BY queue, state"):
                if state in _STATES and _STATES[state] in FINAL_STATES:
                    index.add_final_count(queue, _STATES[state], n)
            for tenant, key, job_id, until in conn.execute(
                    "SELECT tenant_id, idempotency_key, id, key_until FROM jobs "
                    "WHERE key_until > ? AND idempotency_key IS NOT NULL AND state='completed'",
                    (now,)):
                index.add_hold((tenant or "", key), job_id, until)
        finally:
            conn.close()
            if gc_was_enabled:
                gc.enable()
        return loaded, stalled

    async def _close_connections(self) -> None:
        if self._filler is not None:
            self._filler.close()
            self._filler = None
        try:
            if self._reader is not None:
                await self._reader.close()
        except Exception:
            log.exception("closing a SQLite connection failed")
        self._reader = None

    async def close(self) -> None:
        if self._journal is not None:
            await self._journal.close()
        await self._close_connections()
        self._index = self._journal = None
        self._unlock()

    async def ping(self) -> bool:
        if self._reader is None or self._journal is None or self._journal.broken is not None:
            return False
        try:
            async with self._reader.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:
            return False

    # --- journal hooks --------------------------------------------------------------------

    def _hydrate(self, job: Job) -> None:
        """Read the rest of a partial record. Its row is authoritative: a partial record has not
        changed since it was loaded (everything that changes a job completes it first)."""
        if not is_partial(job) or self._filler is None:
            return
        row = self._filler.execute(_REST_SQL, (job.id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"job {job.id} is in memory but not in the journal",
                                   job_id=job.id)
        _fill(job, row)

    def _mark(self, job: Job, op: int) -> None:
        if job.queue not in self._memory_queues:
            self.journal.mark(job, op)

    def _mark_new(self, jobs: list[Job]) -> None:
        memory = self._memory_queues
        self.journal.mark_new([j for j in jobs if j.queue not in memory] if memory else jobs)

    def _committed(self, finished: list[Job]) -> None:
        index = self._index
        if index is not None:
            for job in finished:
                index.evict(job)

    async def _durable(self) -> None:
        fut = self.journal.pending
        if fut is not None:
            await asyncio.shield(fut)

    # --- jobs -----------------------------------------------------------------------------

    async def job_insert_many(self, jobs: Sequence[Job], now: float) -> list[InsertResult]:
        index = self.index
        found = index.insert_many(jobs, now)
        # Scheduled before the commit on purpose: a job claimed before its insert is committed
        # is written once (as an insert of the active row), and the claim still waits for that
        # commit before the job runs, so nothing runs that is not durable.
        index.schedule_new(found, now)
        await self._durable()
        out: list[InsertResult] = []
        for holder, created in found:
            if isinstance(holder, Job):
                if not created:  # an older job holding the key may be a partial record
                    self._hydrate(holder)
                out.append(InsertResult(holder, created))
            else:
                existing = await self.job_get(holder)
                if existing is None:
                    raise JobNotFoundError(f"job {holder} holding an idempotency key vanished",
                                           job_id=holder)
                out.append(InsertResult(existing, False))
        return out

    async def _read(self, job_id: str) -> Job | None:
        if self._reader is None:
            raise StoreClosedError("the store is not open")
        async with self._reader.execute(f"SELECT {COLUMNS} FROM jobs WHERE id=?", (job_id,)) as c:
            row = await c.fetchone()
        return None if row is None else job_from_row(row)

    async def job_get(self, job_id: str) -> Job | None:
        job = self.index.jobs.get(job_id)
        if job is not None:
            self._hydrate(job)
            return job.copy()
        return await self._read(job_id)

    async def _get_record(self, job_id: str) -> Job:
        """The index's record for a job, read back from the file if it was evicted."""
        index = self.index
        job = index.jobs.get(job_id)
        if job is None:
            job = await self._read(job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
            current = index.jobs.get(job_id)  # it may have come back while we read
            if current is not None:
                self._hydrate(current)
                return current
            index.jobs[job_id] = job
        self._hydrate(job)
        return job

    async def job_fetch_available(self, queue: str, limit: int, now: float,
                                  lease_s: float, gate: Gate | None = None) -> FetchResult:
        claimed, expired, deferred = self.index.fetch(queue, limit, now, lease_s, gate)
        if claimed or expired:
            await self._durable()
        return FetchResult(claimed, expired, deferred)

    async def job_unpark(self, key: str, n: int, now: float) -> int:
        return self.index.unpark(key, n, now)

    async def job_settle_many(self, settles: Sequence[Settle]) -> list[Job]:
        index = self.index
        done = [job for s in settles if (job := index.settle(s)) is not None]
        await self._durable()
        for job in done:
            index.drop_if_unkept(job)
        return done

    async def job_heartbeat(self, claims: Sequence[tuple[str, int]],
                            lease_until: float) -> list[str]:
        return self.index.heartbeat(claims, lease_until)

    async def job_rescue_stuck(self, now: float) -> list[Job]:
        rescued = self.index.rescue_stuck(now)
        if rescued:
            await self._durable()
        return rescued

    async def job_cancel(self, job_id: str, now: float) -> Job:
        read_back = job_id not in self.index.jobs
        record = await self._get_record(job_id)
        try:
            job = self.index.cancel(record, now)
        except Exception:
            if read_back:  # a record kept in memory (memory tier: it has no row) stays there
                self.index.evict(record)
            raise
        await self._durable()
        return job.copy()

    async def job_retry_failed(self, job_id: str, now: float, max_attempts: int) -> Job:
        read_back = job_id not in self.index.jobs
        record = await self._get_record(job_id)
        try:
            job = self.index.retry_failed(record, now, max_attempts)
        except Exception:
            if read_back:  # a record kept in memory (memory tier: it has no row) stays there
                self.index.evict(record)
            raise
        await self._durable()
        return job.copy()

    async def job_discard(self, job_id: str) -> Job:
        record = await self._get_record(job_id)
        try:
            job = self.index.discard(record)
        except Exception:
            self.index.evict(record)
            raise
        await self._durable()
        return job.copy()

    async def job_update_result(self, job_id: str, result_json: bytes) -> Job:
        record = await self._get_record(job_id)
        if record.state not in FINAL_STATES:
            raise IllegalTransitionError(
                f"job {job_id} is {record.state.value}; only a finished job's result can be "
                "replaced", job_id=job_id)
        record.result_json = result_json
        # Through the journal like every change: the row is rewritten from the record in the
        # next group commit, and the record leaves memory again once that commit lands.
        self._mark(record, OP_UPDATE)
        await self._durable()
        return record.copy()

    async def job_progress(self, job_id: str, token: int, progress: int) -> bool:
        return self.index.progress(job_id, token, progress)

    async def job_list(self, query: JobQuery) -> list[Job]:
        """Complete records in memory are newer than the file and win; partial ones and
        evicted finished ones are read from the file, where their rows are exact."""
        index = self.index
        whole = (j for j in index.candidates(query) if not is_partial(j))
        found = {j.id: j for j in index.query(query, whole)}
        if self._reader is not None:
            order = "DESC" if query.newest_first else "ASC"
            page = query.limit + 64
            from_file, cursor = 0, query.after
            # Rows that memory supersedes are skipped, so page until the file gave enough.
            while from_file < query.limit:
                where, params = _where(dataclasses.replace(query, after=cursor))
                sql = f"SELECT {COLUMNS} FROM jobs WHERE {where} ORDER BY id {order} LIMIT ?"
                async with self._reader.execute(sql, (*params, page)) as cur:
                    rows = list(await cur.fetchall())
                for row in rows:
                    cursor = row[0]
                    current = index.jobs.get(row[0])
                    if current is not None and not is_partial(current):
                        continue  # memory has the newer version, already matched or not
                    job = job_from_row(row)
                    if matches(job, query):
                        found[job.id] = job
                        from_file += 1
                if len(rows) < page:
                    break
        jobs = sorted(found.values(), key=lambda j: j.id, reverse=query.newest_first)
        return [j.copy() for j in jobs[: query.limit]]

    async def job_prune(self, rules: Sequence[PruneRule]) -> int:
        index = self.index
        removed = len(index.prune(rules))
        await self._durable()
        for rule in rules:
            sql = ("DELETE FROM jobs WHERE queue=? AND state=? AND finished_at < ? "
                   "AND (key_until IS NULL OR key_until <= ?)")
            params: list[Any] = [rule.queue, rule.state.value, rule.before, rule.before]
            if rule.type is not None:
                sql += " AND type=?"
                params.append(rule.type)
            assert self._reader is not None
            async with self._reader.execute(sql.replace("DELETE", "SELECT COUNT(*)", 1),
                                            params) as cur:
                row = await cur.fetchone()
            n = int(row[0]) if row else 0
            if n:
                # Evicted rows may still hold an idempotency key; release it with the row.
                keyed = (sql.replace("DELETE", "SELECT tenant_id, idempotency_key, id", 1)
                         + " AND idempotency_key IS NOT NULL")
                async with self._reader.execute(keyed, params) as cur:
                    async for tenant, key, job_id in cur:
                        hold = index.holds.get((tenant or "", key))
                        if hold is not None and hold.job_id == job_id:
                            del index.holds[(tenant or "", key)]
                await self.journal.execute(sql, params)
                index.add_final_count(rule.queue, rule.state, -n)
                removed += n
        return removed

    # --- queues ---------------------------------------------------------------------------

    async def queue_counts(self, queue: str, now: float) -> QueueCounts:
        return self.index.counts(queue, now, queue in self._paused)

    async def queue_set_paused(self, queue: str, paused: bool) -> None:
        await self.journal.execute(
            "INSERT INTO queue_state (name, paused) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET paused=excluded.paused", (queue, int(paused)))
        (self._paused.add if paused else self._paused.discard)(queue)

    async def queue_paused(self) -> set[str]:
        return set(self._paused)

    async def next_run_at(self, queue: str) -> float | None:
        return self.index.next_run_at(queue)

    async def queue_oldest_due(self, queue: str, now: float) -> float | None:
        return self.index.oldest_due(queue, now)

    # --- analytics events and reports -------------------------------------------------------
    # Written through the journal (one writer, one lock, the same group commit as jobs), read
    # through the reader connection.

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreClosedError("the store is not open")
        return self._reader

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        if events:
            await asyncio.shield(self.journal.write(EVENT_INSERT_SQL,
                                                    [event_row(e) for e in events]))

    async def events_query(self, tenant_id: str | None, start: float, end: float,
                           event_type: str | None = None, *, venue_id: str | None = None,
                           limit: int = 1000) -> list[AnalyticsEvent]:
        sql = (f"SELECT {EVENT_COLUMNS} FROM analytics_events "
               "WHERE tenant_id IS ? AND occurred_at >= ? AND occurred_at < ?")
        params: list[Any] = [tenant_id, start, end]
        if event_type is not None:
            sql += " AND event_type = ?"
            params.append(event_type)
        if venue_id is not None:
            sql += " AND venue_id = ?"
            params.append(venue_id)
        sql += " ORDER BY occurred_at, id LIMIT ?"
        params.append(limit)
        async with self.reader.execute(sql, params) as cur:
            return [event_from_row(r) for r in await cur.fetchall()]

    async def events_prune(self, before: float) -> int:
        return await self._prune("analytics_events", "occurred_at", before)

    async def report_put(self, report: Report) -> None:
        await asyncio.shield(self.journal.write(REPORT_PUT_SQL, [report_row(report)]))

    async def report_get(self, report_id: str) -> Report | None:
        async with self.reader.execute(
                f"SELECT {REPORT_COLUMNS}, content FROM reports WHERE id=?",
                (report_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else Report(**report_fields(row), content=bytes(row[-1]))

    async def report_list(self, tenant_id: str | None, limit: int = 100) -> list[ReportInfo]:
        async with self.reader.execute(
                f"SELECT {REPORT_COLUMNS} FROM reports WHERE tenant_id IS ? "
                "ORDER BY created_at DESC, id DESC LIMIT ?", (tenant_id, limit)) as cur:
            return [ReportInfo(**report_fields(r)) for r in await cur.fetchall()]

    async def report_prune(self, before: float) -> int:
        return await self._prune("reports", "created_at", before)

    async def _prune(self, table: str, column: str, before: float) -> int:
        """Delete the rows of `table` with `column` < `before`, counted first on the reader.
        The delete is bounded by the highest rowid counted, so rows committed after the count
        (rowids only grow) are neither deleted nor miscounted."""
        async with self.reader.execute(
                f"SELECT COUNT(*), MAX(rowid) FROM {table} WHERE {column} < ?",
                (before,)) as cur:
            row = await cur.fetchone()
        n, top = (int(row[0]), row[1]) if row else (0, None)
        if n and top is not None:
            await asyncio.shield(self.journal.execute(
                f"DELETE FROM {table} WHERE {column} < ? AND rowid <= ?", (before, top)))
        return n

    # --- idempotency keys, cron schedules, housekeeping ----------------------------------------

    async def job_release_keys(self, now: float) -> int:
        """Holds in memory are released by the index; in the file, the rows' key_until is
        cleared (what a restart would load holds from, and what `jobs_key_hold` indexes).
        Counted: rows cleared in the file, plus holds of memory-tier jobs (they have no row)."""
        index, journal = self.index, self.journal
        await journal.flush()  # jobs completed so far have their key_until in the file
        async with self.reader.execute(
                "SELECT COUNT(*) FROM jobs WHERE key_until IS NOT NULL AND key_until <= ?",
                (now,)) as cur:
            row = await cur.fetchone()
        in_file = int(row[0]) if row else 0
        released = index.release_ended_holds(now)
        memory = self._memory_queues
        only_here = sum(1 for job_id in released
                        if (job := index.jobs.get(job_id)) is not None and job.queue in memory)
        if in_file:
            await asyncio.shield(journal.execute(
                "UPDATE jobs SET key_until=NULL WHERE key_until IS NOT NULL AND key_until <= ?",
                (now,)))
        return in_file + only_here

    async def journal_housekeep(self, vacuum_pages: int) -> dict[str, int]:
        """Incremental vacuum (up to `vacuum_pages`) and a truncating WAL checkpoint, run by
        the journal's writer between two commits; returns its report (see
        `journal_process.housekeep`)."""
        return await asyncio.shield(self.journal.housekeep(vacuum_pages))

    def _require_open(self) -> None:
        if self._journal is None:
            raise StoreClosedError("the store is not open")

    async def _write_schedule(self, sql: str, params: Sequence[Any]) -> None:
        # `execute`, not `write`: statements run in the order they were made, so a delete and
        # a re-creation of one name in the same commit end as they happened.
        await asyncio.shield(self.journal.execute(sql, params))

    async def _save_schedule(self, schedule: Schedule) -> None:
        await self._write_schedule(sqlite_schedules.UPSERT_SQL,
                                   sqlite_schedules.schedule_row(schedule))

    async def schedule_put(self, schedule: Schedule, *, replace: bool = False) -> bool:
        self._require_open()
        if not self._schedules.put(schedule, replace=replace):
            return False
        await self._save_schedule(schedule)
        return True

    async def schedule_get(self, name: str) -> Schedule | None:
        self._require_open()
        return self._schedules.get(name)

    async def schedule_list(self) -> list[Schedule]:
        self._require_open()
        return self._schedules.list()

    async def schedule_delete(self, name: str) -> bool:
        self._require_open()
        if not self._schedules.delete(name):
            return False
        await self._write_schedule(sqlite_schedules.DELETE_SQL, (name,))
        return True

    async def schedule_claim(self, name: str, version: int, *, last_slot: float,
                             pending: tuple[float, ...], at: float) -> Schedule | None:
        self._require_open()
        claimed = self._schedules.claim(name, version, last_slot=last_slot, pending=pending,
                                        at=at)
        if claimed is not None:
            await self._save_schedule(claimed)
        return claimed

    async def schedule_settle(self, name: str, pending: tuple[float, ...], *,
                              job_id: str | None, error: str | None) -> Schedule | None:
        self._require_open()
        settled = self._schedules.settle(name, pending, job_id=job_id, error=error)
        if settled is not None:
            await self._save_schedule(settled)
        return settled

    async def schedule_set_paused(self, name: str, paused: bool, *,
                                  at: float) -> Schedule | None:
        self._require_open()
        changed = self._schedules.set_paused(name, paused, at=at)
        if changed is not None:
            await self._save_schedule(changed)
        return changed

    # --- monitor: alerts and queue snapshots ---------------------------------------------------
    # Written through the journal like events and reports; read through the reader connection
    # (every write is awaited until committed, so the reader sees it afterwards).

    async def alert_insert(self, alert: NewAlert) -> AlertRecord:
        journal = self.journal
        self._alert_seq += 1
        record = alert.stored(self._alert_seq)
        await asyncio.shield(journal.write(_ALERT_INSERT_SQL, [_alert_row(record)]))
        return record

    async def alert_get(self, alert_id: int) -> AlertRecord | None:
        async with self.reader.execute(
                f"SELECT {ALERT_COLUMNS} FROM alert_history WHERE id=?", (alert_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else alert_from_row(row)

    async def alert_list(self, severity: str | None = None, limit: int = 50, *,
                         since: float | None = None, queue: str | None = None,
                         alert_type: str | None = None,
                         acknowledged: bool | None = None) -> list[AlertRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("severity", severity), ("queue_name", queue),
                              ("alert_type", alert_type)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        if acknowledged is not None:
            clauses.append("acknowledged = ?")
            params.append(int(acknowledged))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        async with self.reader.execute(
                f"SELECT {ALERT_COLUMNS} FROM alert_history {where}"
                "ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit)) as cur:
            return [alert_from_row(r) for r in await cur.fetchall()]

    async def alert_set_channels(self, alert_id: int, channels: Mapping[str, str]) -> None:
        if channels:
            await asyncio.shield(self.journal.write(
                "UPDATE alert_history SET channels = json_patch(channels, ?) WHERE id = ?",
                [(orjson.dumps(dict(channels)).decode(), alert_id)]))

    async def alert_acknowledge(self, alert_id: int, by: str, at: float) -> AlertRecord | None:
        current = await self.alert_get(alert_id)
        if current is None or current.acknowledged:
            return current
        # Only an unacknowledged row changes, so of two acknowledgements racing the first one
        # committed stands; both callers read back that one.
        await asyncio.shield(self.journal.write(
            "UPDATE alert_history SET acknowledged = 1, acknowledged_by = ?, "
            "acknowledged_at = ? WHERE id = ? AND acknowledged = 0", [(by, at, alert_id)]))
        return await self.alert_get(alert_id)

    async def alert_prune(self, before: float) -> int:
        return await self._prune("alert_history", "created_at", before)

    async def snapshot_insert(self, snapshots: Sequence[QueueSnapshot]) -> None:
        if snapshots:
            await asyncio.shield(self.journal.write(
                _SNAPSHOT_INSERT_SQL, [snapshot_row(s) for s in snapshots]))

    async def snapshot_list(self, queue: str | None, start: float, end: float,
                            limit: int = 10_000) -> list[QueueSnapshot]:
        sql = f"SELECT {SNAPSHOT_COLUMNS} FROM queue_metrics WHERE "
        params: list[Any] = []
        if queue is not None:
            sql += "queue_name = ? AND "
            params.append(queue)
        sql += "captured_at >= ? AND captured_at < ? ORDER BY captured_at, rowid LIMIT ?"
        params += [start, end, limit]
        async with self.reader.execute(sql, params) as cur:
            return [snapshot_from_row(r) for r in await cur.fetchall()]

    async def snapshot_prune(self, before: float) -> int:
        return await self._prune("queue_metrics", "captured_at", before)


_ALERT_INSERT_SQL = (f"INSERT INTO alert_history ({ALERT_COLUMNS}) "
                     f"VALUES ({', '.join('?' * len(ALERT_FIELDS))})")
_SNAPSHOT_INSERT_SQL = (f"INSERT INTO queue_metrics ({SNAPSHOT_COLUMNS}) "
                        f"VALUES ({', '.join('?' * len(SNAPSHOT_FIELDS))})")


def _alert_row(a: AlertRecord) -> tuple[Any, ...]:
    return (a.id, a.severity, a.alert_type, a.message, a.queue_name, a.metric_value,
            a.threshold_value, orjson.dumps(dict(a.channels)).decode(), int(a.acknowledged),
            a.acknowledged_by, a.acknowledged_at, a.created_at)


def _where(q: JobQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["1=1"]
    params: list[Any] = []
    for column, value in (("queue", q.queue), ("type", q.type), ("tenant_id", q.tenant_id),
                          ("idempotency_key", q.idempotency_key)):
        if value is not None:
            clauses.append(f"{column}=?")
            params.append(value)
    if q.states is not None:
        clauses.append(f"state IN ({','.join('?' * len(q.states))})")
        params.extend(s.value for s in q.states)
    if q.finished_after is not None:
        clauses.append("finished_at >= ?")
        params.append(q.finished_after)
    if q.after is not None:
        clauses.append("id < ?" if q.newest_first else "id > ?")
        params.append(q.after)
    return " AND ".join(clauses), params

