"""`postgresql://...`: several nodes (`python -m tickq serve` processes or embedding apps) on one
database, each job run by one of them at a time and none lost.

The database holds the jobs of the durable queues and every node claims from it directly
(`postgres_claim`: batches under `FOR UPDATE SKIP LOCKED`, in the dispatch order of the
in-memory index). Every state change is one statement per batch and names the claim token it
belongs to, so a node whose lease was lost cannot report over a newer claim. Idempotency is the
unique index `jobs_key`; an enqueue never checks and then inserts.

Durability per queue: money (fsync) commits synchronously; communication (crash-safe) commits
through a second pool with `synchronous_commit = off`, which survives a crash of any tickq
process (the data is in PostgreSQL) but not necessarily of the database server within its
last fraction of a second. The memory tier (background) stays in each node's memory, as its
contract says: a node's background jobs are run by that node and are gone when it stops.

Wake-ups: an insert notifies the queue's channel once per batch (`pg_notify` in the insert
statement, sent at commit); the other nodes' feeders wake through `on_available`, and a feeder
never sleeps longer than a second, so a lost notification costs at most that.

Provider limits are shared: the first claim that passes the engine's gate attaches
`postgres_buckets.SharedBuckets` to the gate's limiter, so the nodes together stay within each
configured provider limit instead of reaching it once per node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from tickq.engine.gate import Gate
from tickq.engine.job import Job
from tickq.engine.limiter import RateLimiter
from tickq.engine.outcome import Settle
from tickq.engine.queues import Durability, QueueConfig, QueueCounts
from tickq.engine.states import JobState
from tickq.errors import (
    ConfigError,
    IdempotencyConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    StoreClosedError,
)
from tickq.storage.base import FetchResult, InsertResult, JobQuery, OpenReport, PruneRule
from tickq.storage.memory import MemoryStore
from tickq.storage.postgres_buckets import SharedBuckets
from tickq.storage.postgres_claim import Claimer
from tickq.storage.postgres_node import SESSION, NodeLink, migrate
from tickq.storage.postgres_records import PostgresRecords
from tickq.storage.postgres_rows import (
    CANCEL_SQL,
    COLUMNS,
    COUNTS_SQL,
    DISCARD_SQL,
    GET_SQL,
    HEARTBEAT_SQL,
    HOLDERS_SQL,
    INSERT_SQL,
    LIVE_COUNT_SQL,
    NEXT_RUN_SQL,
    OLDEST_DUE_SQL,
    PROGRESS_SQL,
    PRUNE_SQL,
    RELEASE_ENDED_SQL,
    RELEASE_KEYS_SQL,
    RESCUE_EXPIRED_SQL,
    RESCUE_NODES_SQL,
    SETTLE_SQL,
    UPDATE_RESULT_SQL,
    hold_ended,
    insert_args,
    job_from_record,
    settle_args,
    stall_tail,
)

log = logging.getLogger(__name__)

#: connections per pool (one pool commits synchronously, one does not); with the node's own
#: connection a node uses at most 2 * POOL_SIZE + 1
POOL_SIZE = 5
#: finished jobs deleted per statement when pruning
PRUNE_BATCH = 5_000
#: an enqueue whose key holder vanished between the insert and the look-up tries again
INSERT_ATTEMPTS = 5

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL with any password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(PostgresRecords):
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.pool_size = pool_size
        self.on_available: Callable[[str], None] | None = None
        self._pool_sync: asyncpg.Pool | None = None
        self._pool_lazy: asyncpg.Pool | None = None
        self._node: NodeLink | None = None
        self._claimer: Claimer | None = None
        self._memory: MemoryStore | None = None
        self._queues: dict[str, QueueConfig] = {}
        self.schema = ""
        #: the latest time any call named: "delayed" means due after it
        self._now = 0.0
        #: claimed jobs of queues that do not fsync, until they are settled
        self._lazy_claims: set[str] = set()
        #: the shared provider buckets, once a gate with a limiter has asked
        self.buckets: SharedBuckets | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def _pool(self) -> asyncpg.Pool:
        return self._read()

    @property
    def node(self) -> NodeLink:
        return _opened(self._node)

    @property
    def node_id(self) -> int:
        return self.node.node_id

    @property
    def memory(self) -> MemoryStore:
        return _opened(self._memory)

    @property
    def claimer(self) -> Claimer:
        return _opened(self._claimer)

    async def open(self, queues: Mapping[str, QueueConfig], now: float) -> OpenReport:
        if self._pool_sync is not None:
            raise StoreClosedError("the store is already open")
        self._queues = dict(queues)
        self._now = max(self._now, now)
        try:
            self._pool_sync = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, server_settings=SESSION)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConfigError(f"TICKQ_DATABASE_URL: cannot connect to {redact(self.url)}: "
                              f"{exc}") from exc
        try:
            async with self._pool_sync.acquire() as conn:
                self.schema = str(await conn.fetchval("SELECT current_schema()") or "")
                if not self.schema:
                    raise ConfigError(
                        f"TICKQ_DATABASE_URL: {redact(self.url)} has no schema to create tables "
                        "in (its search_path names none that exists)")
                await migrate(conn, self.schema)
            self._pool_lazy = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size,
                server_settings={**SESSION, "synchronous_commit": "off"})
            self._node = NodeLink(self.url, self.schema, on_notice=self._notice)
            await self._node.start()
            self._claimer = Claimer(self._node.node_id)
            memory_queues = {n: q for n, q in queues.items()
                             if q.durability is Durability.MEMORY}
            self._memory = MemoryStore()
            await self._memory.open(memory_queues, now)
            stalled = await self._rescue_gone(now, "process stopped while the job was running")
            loaded = int(await self._pool.fetchval(LIVE_COUNT_SQL))
        except BaseException:
            await self.close()
            raise
        log.info("PostgreSQL store open", extra={
            "event": "store_open", "schema": self.schema, "node": self._node.node_id,
            "loaded": loaded, "stalled": len(stalled)})
        return OpenReport(stalled=stalled, loaded=loaded)

    async def close(self) -> None:
        buckets, self.buckets = self.buckets, None
        if buckets is not None:
            await buckets.close()
        node, self._node = self._node, None
        if node is not None:
            await node.close()
        for pool in (self._pool_lazy, self._pool_sync):
            if pool is not None:
                try:
                    await pool.close()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pool.terminate()
        self._pool_sync = self._pool_lazy = None
        if self._memory is not None:
            await self._memory.close()
        self._memory = None
        self._claimer = None
        self._lazy_claims.clear()

    async def ping(self) -> bool:
        if self._pool_sync is None or self._node is None:
            return False
        try:
            return bool(await self._pool_sync.fetchval("SELECT true"))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    def _notice(self, queue: str, node: int) -> None:
        callback = self.on_available
        if callback is not None:
            callback(queue)

    async def try_lead(self) -> bool:
        """Whether this node is (now) the leader of the deployment; see `NodeLink.try_lead`."""
        return await self.node.try_lead()

    # --- routing --------------------------------------------------------------------------

    def _in_memory(self, queue: str) -> bool:
        cfg = self._queues.get(queue)
        return cfg is not None and cfg.durability is Durability.MEMORY

    def _lazy_queue(self, queue: str) -> bool:
        cfg = self._queues.get(queue)
        return cfg is not None and cfg.durability is Durability.CRASH_SAFE

    def _pool_for(self, lazy: bool) -> asyncpg.Pool:
        return self._write() if lazy else self._read()

    def _seen(self, now: float) -> None:
        if now > self._now:
            self._now = now

    # --- insert and read ------------------------------------------------------------------

    async def job_insert_many(self, jobs: Sequence[Job], now: float) -> list[InsertResult]:
        self._seen(now)
        out: list[InsertResult | None] = [None] * len(jobs)
        kept, todo = _split(enumerate(jobs), lambda ij: self._in_memory(ij[1].queue))
        if kept:
            found = await self.memory.job_insert_many([j for _, j in kept], now)
            for (i, _), res in zip(kept, found, strict=True):
                out[i] = res
        lazy = all(self._lazy_queue(j.queue) for _, j in todo)
        pool = self._pool_for(lazy)
        for _ in range(INSERT_ATTEMPTS):
            if not todo:
                break
            rows = await pool.fetch(INSERT_SQL, *insert_args([j for _, j in todo]),
                                    self.node.channel, str(self.node.node_id))
            created = {r[0] for r in rows}
            waiting: list[tuple[int, Job]] = []
            for i, job in todo:
                if job.id in created:
                    out[i] = InsertResult(job, True)
                else:  # only a key can make an insert do nothing (a taken id raises)
                    waiting.append((i, job))
            todo = await self._holders(waiting, now, out)
        if todo:
            raise IdempotencyConflictError(
                f"idempotency key {todo[0][1].idempotency_key!r} kept changing hands; try again",
                job_id=todo[0][1].id)
        return [r for r in out if r is not None]

    async def _holders(self, waiting: list[tuple[int, Job]], now: float,
                       out: list[InsertResult | None]) -> list[tuple[int, Job]]:
        """Answer each job that lost its key with the job holding it; returns the jobs to insert
        again (their holder let the key go meanwhile, or its hold had ended)."""
        if not waiting:
            return []
        rows = await self._pool.fetch(HOLDERS_SQL, [j.tenant_id or "" for _, j in waiting],
                                      [j.idempotency_key for _, j in waiting])
        holders = {(h.tenant_id or "", h.idempotency_key): h for h in map(job_from_record, rows)}
        ended = [h.id for h in holders.values() if hold_ended(h, now)]
        if ended:
            await self._pool.execute(RELEASE_ENDED_SQL, ended, now)
        again: list[tuple[int, Job]] = []
        for i, job in waiting:
            holder = holders.get((job.tenant_id or "", job.idempotency_key or ""))
            if holder is None or holder.id in ended:
                again.append((i, job))
            else:
                out[i] = InsertResult(holder, False)
        return again

    async def job_get(self, job_id: str) -> Job | None:
        kept = self.memory.index.jobs.get(job_id)
        if kept is not None:
            return kept.copy()
        record = await self._pool.fetchrow(GET_SQL, job_id)
        return None if record is None else job_from_record(record)

    async def _must_get(self, job_id: str) -> Job:
        job = await self.job_get(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
        return job

    # --- claims ---------------------------------------------------------------------------

    async def job_fetch_available(self, queue: str, limit: int, now: float,
                                  lease_s: float, gate: Gate | None = None) -> FetchResult:
        self._seen(now)
        if self._in_memory(queue):
            return await self.memory.job_fetch_available(queue, limit, now, lease_s, gate)
        lazy = self._lazy_queue(queue)
        if gate is not None and self.buckets is None:
            self._share_limits(gate)
        async with self._pool_for(lazy).acquire() as conn:
            got = await self.claimer.claim(conn, queue, limit, now, lease_s, gate)
        if lazy:
            self._lazy_claims.update(j.id for j in got.claimed)
        return got

    def _share_limits(self, gate: Gate) -> None:
        """Make the gate's limiter draw configured buckets from the database as well.

        A limiter that already has a token source (another store's, or the embedding
        application's) is left alone."""
        limiter = getattr(gate, "limiter", None)
        if isinstance(limiter, RateLimiter) and limiter.token_source is None:
            # Leases go through the pool that does not wait for a synchronous commit: a bucket
            # row lost in a database crash only refills a bucket early, once.
            self.buckets = SharedBuckets(self._pool_for(True), limiter)
            limiter.token_source = self.buckets

    async def job_unpark(self, key: str, n: int, now: float) -> int:
        back = await self.memory.job_unpark(key, n, now)
        return back + self.claimer.lots.unpark(key, n - back) if back < n else back

    async def job_settle_many(self, settles: Sequence[Settle]) -> list[Job]:
        kept = self.memory.index.jobs
        here, there = _split(settles, lambda s: s.job_id in kept)
        done = await self.memory.job_settle_many(here) if here else []
        if not there:
            return done
        lazy = all(s.job_id in self._lazy_claims for s in there)
        rows = await self._pool_for(lazy).fetch(SETTLE_SQL, *settle_args(there))
        self._lazy_claims.difference_update(s.job_id for s in there)
        done.extend(job_from_record(r) for r in rows)
        return done

    async def job_heartbeat(self, claims: Sequence[tuple[str, int]],
                            lease_until: float) -> list[str]:
        kept = self.memory.index.jobs
        here, there = _split(claims, lambda c: c[0] in kept)
        lost = await self.memory.job_heartbeat(here, lease_until)
        if there:
            rows = await self._pool.fetch(HEARTBEAT_SQL, [c[0] for c in there],
                                          [c[1] for c in there], lease_until)
            held = {r[0] for r in rows}
            gone = [job_id for job_id, _ in there if job_id not in held]
            self._lazy_claims.difference_update(gone)
            lost.extend(gone)
        return lost

    async def job_rescue_stuck(self, now: float) -> list[Job]:
        self._seen(now)
        rescued = await self.memory.job_rescue_stuck(now)
        rows = await self._pool.fetch(RESCUE_EXPIRED_SQL, now,
                                      stall_tail(now, "lease expired while running"))
        rescued.extend(map(job_from_record, rows))
        rescued.extend(await self._rescue_gone(now, "its node stopped while the job was running"))
        self._lazy_claims.difference_update(j.id for j in rescued)
        return rescued

    async def _rescue_gone(self, now: float, why: str) -> list[Job]:
        """Stall the claims of nodes whose sessions have ended."""
        node = self.node
        if not node.connected:
            return []
        gone = await node.gone_nodes()
        if not gone:
            return []
        try:
            rows = await self._pool.fetch(RESCUE_NODES_SQL, now, stall_tail(now, why), gone)
        finally:
            await node.let_go(gone)
        jobs = [job_from_record(r) for r in rows]
        if jobs:
            log.warning("claims of stopped nodes rescued", extra={
                "event": "nodes_rescued", "nodes": len(gone), "jobs": len(jobs)})
        return jobs

    async def _notify(self, conn: asyncpg.Connection, queue: str) -> None:
        await conn.execute("SELECT pg_notify($1, $2)", self.node.channel,
                           f"{queue} {self.node.node_id}")

    # --- operator actions -----------------------------------------------------------------

    async def job_cancel(self, job_id: str, now: float) -> Job:
        self._seen(now)
        if job_id in self.memory.index.jobs:
            return await self.memory.job_cancel(job_id, now)
        record = await self._pool.fetchrow(CANCEL_SQL, job_id, now)
        if record is not None:
            return job_from_record(record)
        job = await self._must_get(job_id)
        if job.state is not JobState.ACTIVE:
            raise IllegalTransitionError(
                f"job {job_id} is {job.state.value} and can no longer be cancelled",
                job_id=job_id)
        return job

    async def job_retry_failed(self, job_id: str, now: float, max_attempts: int) -> Job:
        self._seen(now)
        if job_id in self.memory.index.jobs:
            return await self.memory.job_retry_failed(job_id, now, max_attempts)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                record = await conn.fetchrow(f"{GET_SQL} FOR UPDATE", job_id)
                if record is None:
                    raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
                job = job_from_record(record)
                if job.state is not JobState.FAILED:
                    raise IllegalTransitionError(
                        f"job {job_id} is {job.state.value}; only a failed job can be retried",
                        job_id=job_id)
                if job.idempotency_key is not None:
                    await self._take_key_back(conn, job, now)
                expires_at = (None if job.expires_at is None
                              else now + max(0.0, job.expires_at - job.created_at))
                record = await conn.fetchrow(
                    "UPDATE jobs SET state = 'waiting', max_attempts = attempts + $2, "
                    "expires_at = $3, run_at = $4, finished_at = NULL, "
                    "key_hold = idempotency_key IS NOT NULL "
                    f"WHERE id = $1 RETURNING {COLUMNS}", job_id, max_attempts, expires_at, now)
                await self._notify(conn, job.queue)
        except asyncpg.UniqueViolationError:
            raise IdempotencyConflictError(
                f"idempotency key {job.idempotency_key!r} is now held by another job",
                job_id=job_id) from None
        return job_from_record(record)

    async def _take_key_back(self, conn: asyncpg.Connection, job: Job, now: float) -> None:
        """A dead-letter job may hold its key again unless another job holds it now."""
        rows = await conn.fetch(HOLDERS_SQL, [job.tenant_id or ""], [job.idempotency_key])
        for holder in map(job_from_record, rows):
            if holder.id == job.id:
                continue
            if hold_ended(holder, now):
                await conn.execute(RELEASE_ENDED_SQL, [holder.id], now)
            else:
                raise IdempotencyConflictError(
                    f"idempotency key {job.idempotency_key!r} is now held by job {holder.id}",
                    job_id=job.id)

    async def job_progress(self, job_id: str, token: int, progress: int) -> bool:
        if job_id in self.memory.index.jobs:
            return await self.memory.job_progress(job_id, token, progress)
        status = await self._pool.execute(PROGRESS_SQL, job_id, token,
                                          max(0, min(100, progress)))
        return bool(status == "UPDATE 1")

    async def job_discard(self, job_id: str) -> Job:
        if job_id in self.memory.index.jobs:
            return await self.memory.job_discard(job_id)
        record = await self._pool.fetchrow(DISCARD_SQL, job_id)
        if record is not None:
            return job_from_record(record)
        job = await self._must_get(job_id)
        raise IllegalTransitionError(
            f"job {job_id} is {job.state.value}; only a failed job can be discarded",
            job_id=job_id)

    async def job_update_result(self, job_id: str, result_json: bytes) -> Job:
        if job_id in self.memory.index.jobs:
            return await self.memory.job_update_result(job_id, result_json)
        record = await self._pool.fetchrow(UPDATE_RESULT_SQL, job_id, result_json)
        if record is not None:
            return job_from_record(record)
        job = await self._must_get(job_id)
        raise IllegalTransitionError(
            f"job {job_id} is {job.state.value}; only a finished job's result can be replaced",
            job_id=job_id)

    async def job_list(self, query: JobQuery) -> list[Job]:
        found: list[Job] = []
        if query.queue is None or self._in_memory(query.queue):
            found.extend(await self.memory.job_list(query))
        if query.queue is None or not self._in_memory(query.queue):
            where, params = _where(query)
            order = "DESC" if query.newest_first else "ASC"
            rows = await self._pool.fetch(
                f"SELECT {COLUMNS} FROM jobs WHERE {where} ORDER BY id {order} "
                f"LIMIT ${len(params) + 1}", *params, query.limit)
            found.extend(map(job_from_record, rows))
        found.sort(key=lambda j: j.id, reverse=query.newest_first)
        return found[: query.limit]

    async def job_prune(self, rules: Sequence[PruneRule]) -> int:
        kept, there = _split(rules, lambda r: self._in_memory(r.queue))
        removed = await self.memory.job_prune(kept) if kept else 0
        if not there:
            return removed
        args = ([r.queue for r in there], [r.state.value for r in there],
                [r.before for r in there], [r.type for r in there])
        while True:
            status = await self._pool.execute(PRUNE_SQL, *args, PRUNE_BATCH)
            n = int(status.rsplit(" ", 1)[-1])
            removed += n
            if n < PRUNE_BATCH:
                return removed

    async def job_release_keys(self, now: float) -> int:
        self._seen(now)
        released = await self.memory.job_release_keys(now)
        return released + int(await self._pool.fetchval(RELEASE_KEYS_SQL, now))

    # --- queues ---------------------------------------------------------------------------

    async def queue_counts(self, queue: str, now: float) -> QueueCounts:
        self._seen(now)
        if self._in_memory(queue):
            paused = await self._paused(queue)
            counts = await self.memory.queue_counts(queue, now)
            return QueueCounts(waiting=counts.waiting, delayed=counts.delayed,
                               active=counts.active, completed=counts.completed,
                               failed=counts.failed, cancelled=counts.cancelled, paused=paused)
        r = await self._pool.fetchrow(COUNTS_SQL, queue, now)
        assert r is not None
        return QueueCounts(waiting=r[0], delayed=r[1], active=r[2], completed=r[3], failed=r[4],
                           cancelled=r[5], paused=r[6])

    async def _paused(self, queue: str) -> bool:
        return bool(await self._pool.fetchval(
            "SELECT coalesce((SELECT paused FROM queue_state WHERE name = $1), false)", queue))

    async def queue_set_paused(self, queue: str, paused: bool) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO queue_state (name, paused) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused", queue, paused)
            await self._notify(conn, queue)

    async def queue_paused(self) -> set[str]:
        rows = await self._pool.fetch("SELECT name FROM queue_state WHERE paused")
        return {r[0] for r in rows}

    async def next_run_at(self, queue: str) -> float | None:
        if self._in_memory(queue):
            return await self.memory.next_run_at(queue)
        value = await self._pool.fetchval(NEXT_RUN_SQL, queue, self._now)
        return None if value is None else float(value)

    async def queue_oldest_due(self, queue: str, now: float) -> float | None:
        if self._in_memory(queue):
            return await self.memory.queue_oldest_due(queue, now)
        value = await self._pool.fetchval(OLDEST_DUE_SQL, queue, now)
        return None if value is None else float(value)


def _opened(part: T | None) -> T:
    """A part the store has while it is open."""
    if part is None:
        raise StoreClosedError("the store is not open")
    return part


def _split(items: Iterable[T], kept: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """`items` in two lists, those `kept` in memory and the rest, each in its order: one
    look-up per item (a batch is split like this on every insert, settle and heartbeat)."""
    here: list[T] = []
    there: list[T] = []
    for item in items:
        (here if kept(item) else there).append(item)
    return here, there


def _where(q: JobQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["true"]
    params: list[Any] = []
    for column, value in (("queue", q.queue), ("type", q.type), ("tenant_id", q.tenant_id),
                          ("idempotency_key", q.idempotency_key)):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    if q.states is not None:
        # Literals (the states are a closed set), so the planner can use the partial indexes.
        names = ", ".join(f"'{s.value}'" for s in sorted(q.states)) or "NULL"
        clauses.append(f"state IN ({names})")
    if q.finished_after is not None:
        params.append(q.finished_after)
        clauses.append(f"finished_at >= ${len(params)}")
    if q.after is not None:
        params.append(q.after)
        clauses.append(f"id {'<' if q.newest_first else '>'} ${len(params)}")
    return " AND ".join(clauses), params
