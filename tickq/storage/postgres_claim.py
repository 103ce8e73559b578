"""Claiming jobs from PostgreSQL in batches, in the order the in-memory index would.

One fetch is one transaction: a loose index scan lists the runs of waiting jobs of the queue
(one per priority, tenant and job type that has a due job), then rounds of
`SELECT ... FOR UPDATE SKIP LOCKED` lock a quota of the oldest jobs of the runs chosen (usually
one round: more only when a run had fewer due jobs than its quota, or the gate refused some),
the gate is asked about each, and one UPDATE claims what was decided (another expires what
was found past its expiry). Rows another node holds are skipped, never waited for, so nodes
claiming together each get distinct jobs.

Order: highest priority first; within a priority, tenants in turn (deficit round robin with a
quantum of one job, as `JobIndex.fetch`: a round gives every tenant of the level an equal quota,
jobs are taken turn by turn, and the next fetch starts after the last tenant served); within a
tenant, oldest run_at, then id, across its job types.

Parking: a job the gate refuses stays waiting, untouched (no attempt spent, nothing written)
and is remembered, by id, in the lot the gate named. The refusal also holds for its job type
(the engine's gate decides by provider, which the type determines): the fetch that parks the
first one looks at up to `PARK_SWEEP` more due jobs of that type (each is offered to the gate,
and reported deferred when refused, as the index parks every job it passes), and later fetches
leave the type out while its lot holds jobs, so the loose scan skips its whole run: a backlog of
100,000 jobs behind a 1/s provider costs one index probe per fetch, and the jobs of other types
behind it are still claimed. `unpark(lot, n)` hands back the lot's first `n` jobs, which the
next fetch offers to the gate before anything else; once a lot is empty its types are looked at
again. Parking is this node's own; other nodes decide with their own gates.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tickq.engine.gate import Gate
from tickq.engine.job import ErrorEntry, Job, append_error
from tickq.engine.states import JobState
from tickq.storage.base import FetchResult
from tickq.storage.postgres_rows import (
    CLAIM_SQL,
    COLUMNS,
    EXPIRE_SQL,
    J_COLUMNS,
    job_from_record,
)

#: runs (priority, tenant, type) with due jobs a fetch looks at, highest priority first; with
#: more than this many ready at once, the ones past it wait until those before them drain
MAX_RUNS = 2048
#: runs a fetch walks in all, due or not (a run of delayed jobs only costs a probe)
MAX_WALK = 16_384
#: lock rounds per fetch (each one statement); a fetch returns what it has after these
MAX_ROUNDS = 32
#: due jobs of a newly refused type a fetch parks along with the first one
PARK_SWEEP = 500

#: (priority, tenant, type) of each run of waiting jobs with a due one, highest priority first,
#: by a loose index scan of `jobs_ready` (one probe per run, whatever the backlog; the walk
#: stops once enough due runs are found)
RUNS_SQL = """
WITH RECURSIVE r AS (
    (SELECT priority, coalesce(tenant_id, '') AS tk, type, run_at FROM jobs
     WHERE queue = $1 AND state = 'waiting'
     ORDER BY priority DESC, coalesce(tenant_id, '') DESC, type DESC, run_at, id LIMIT 1)
    UNION ALL
    SELECT n.priority, n.tk, n.type, n.run_at FROM r, LATERAL (
        SELECT priority, coalesce(tenant_id, '') AS tk, type, run_at FROM jobs
        WHERE queue = $1 AND state = 'waiting'
          AND (priority, coalesce(tenant_id, ''), type) < (r.priority, r.tk, r.type)
        ORDER BY priority DESC, coalesce(tenant_id, '') DESC, type DESC, run_at, id LIMIT 1) n
)
SELECT priority, tk, type FROM (SELECT * FROM r LIMIT $4) s
WHERE run_at <= $2 AND type <> ALL($5::text[]) LIMIT $3
"""

#: for the claim's statements only: walk `jobs_ready` in its order rather than sort. A queue
#: table's statistics are often stale (a burst of 100,000 jobs arrives between two autovacuum
#: analyses), and estimates of a row or two made the planner scan the smaller `jobs_due` and
#: sort instead, a full scan of the queue per probe (500 tenants: 2.4 s a fetch, measured).
#: The cost penalty this puts on a sort that remains (the unparked jobs' order) would also cross
#: the JIT threshold: compiling took 180 ms of a 0.1 ms query, so no JIT.
PLANNER_SQL = ("SET LOCAL enable_sort = off; SET LOCAL enable_incremental_sort = off; "
               "SET LOCAL jit = off")

#: the jobs handed back by `unpark` that are still waiting and due, in dispatch order
RELEASED_SQL = f"""
SELECT {COLUMNS} FROM jobs
WHERE id = ANY($1::text[]) AND queue = $2 AND state = 'waiting' AND run_at <= $3
ORDER BY priority DESC, run_at, id
FOR UPDATE SKIP LOCKED
"""

#: lock up to `quota` of the oldest due jobs of each run given, skipping rows others hold and
#: the ids already decided in this fetch
LOCK_SQL = f"""
SELECT {J_COLUMNS}
FROM unnest($3::int4[], $4::text[], $5::text[], $6::int4[]) AS g(priority, tk, type, quota),
LATERAL (
    SELECT {COLUMNS} FROM jobs
    WHERE queue = $1 AND state = 'waiting' AND priority = g.priority
      AND coalesce(tenant_id, '') = g.tk AND type = g.type AND run_at <= $2
      AND id <> ALL($7::text[])
    ORDER BY run_at, id LIMIT g.quota
    FOR UPDATE SKIP LOCKED) j
"""


@dataclass(slots=True)
class _Lot:
    #: (queue, job type) pairs held back while the lot holds jobs
    types: set[tuple[str, str]] = field(default_factory=set)
    #: job id -> queue of the jobs parked here, in the order they were parked
    jobs: dict[str, str] = field(default_factory=dict)


class ParkingLots:
    """The jobs this node has parked, by lot (provider bucket), and the types they hold back."""

    def __init__(self) -> None:
        self._lots: dict[str, _Lot] = {}
        #: queue -> jobs unparked and not yet offered again, in the order they came back
        self._released: dict[str, list[str]] = {}

    def park(self, key: str, queue: str, type_name: str, job_id: str) -> None:
        lot = self._lots.get(key)
        if lot is None:
            lot = self._lots[key] = _Lot()
        lot.types.add((queue, type_name))
        lot.jobs[job_id] = queue

    def held(self, queue: str) -> set[str]:
        """The job types of `queue` held back now."""
        return {t for lot in self._lots.values() for q, t in lot.types if q == queue}

    def unpark(self, key: str, n: int) -> int:
        """Hand back the first `n` jobs of lot `key`; an emptied lot stops holding its types
        back. Returns how many came back."""
        lot = self._lots.get(key)
        if lot is None or n <= 0:
            return 0
        back = list(lot.jobs)[:n]
        for job_id in back:
            self._released.setdefault(lot.jobs.pop(job_id), []).append(job_id)
        if not lot.jobs:
            del self._lots[key]
        return len(back)

    def forget(self, queue: str) -> None:
        """Stop holding back the types of `queue`: jobs parked here were taken by another
        node, whose gate let them through first, so the jobs parked on this node are a stale
        picture of what is due; the next fetch looks at the queue afresh."""
        for key, lot in list(self._lots.items()):
            lot.types = {t for t in lot.types if t[0] != queue}
            lot.jobs = {j: q for j, q in lot.jobs.items() if q != queue}
            if not lot.jobs:
                del self._lots[key]

    def released(self, queue: str) -> list[str]:
        """Take the jobs of `queue` handed back so far."""
        return self._released.pop(queue, [])

    def keep_released(self, queue: str, job_ids: list[str]) -> None:
        """Jobs taken by `released` that a fetch had no room for: first again next time."""
        if job_ids:
            self._released[queue] = job_ids + self._released.get(queue, [])

    def clear(self) -> None:
        self._lots.clear()
        self._released.clear()


@dataclass(slots=True, eq=False)
class _Tenant:
    priority: int
    key: str
    #: job types with due jobs not yet known to be exhausted in this fetch
    types: list[str]
    #: jobs of this tenant decided in this fetch (its next job's turn)
    taken: int = 0
    #: the jobs locked for it in the current round, in (run_at, id) order
    batch: list[Job] = field(default_factory=list)


class Claimer:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.lots = ParkingLots()
        #: (queue, priority) -> the tenant served last: the next fetch starts after it
        self._cursor: dict[tuple[str, int], str] = {}

    async def claim(self, conn: asyncpg.Connection, queue: str, limit: int, now: float,
                    lease_s: float, gate: Gate | None) -> FetchResult:
        out = FetchResult([], [], [])
        if limit <= 0:
            return out
        try:
            async with conn.transaction():
                await conn.execute(PLANNER_SQL)
                await self._decide(conn, queue, limit, now, gate, out)
                if out.claimed:
                    await conn.execute(CLAIM_SQL, [j.id for j in out.claimed], now + lease_s,
                                       now, self.node_id)
                if out.expired:
                    await conn.execute(EXPIRE_SQL, [j.id for j in out.expired],
                                       [j.errors_json for j in out.expired], now)
        except BaseException:
            _give_back(gate, out.claimed)
            raise
        for job in out.claimed:
            job.state = JobState.ACTIVE
            job.attempts += 1
            job.claim_token += 1
            job.lease_until = now + lease_s
            job.started_at = now
        return out

    async def _decide(self, conn: asyncpg.Connection, queue: str, limit: int, now: float,
                      gate: Gate | None, out: FetchResult) -> None:
        lots = self.lots
        decided: list[str] = []
        #: job id -> (level, turn, place in the level's rotation): the dispatch order
        order: dict[str, tuple[int, int, int]] = {}
        #: types refused during this fetch: their other due jobs are parked along
        refused: list[str] = []

        def take(job: Job, rank: tuple[int, int, int], sweeping: bool = False) -> bool:
            """Decide a locked job: expire, park or claim it. False when there is no room
            for it (the job is left alone): a full fetch still parks while `sweeping`."""
            full = len(out.claimed) >= limit
            if full and not sweeping:
                return False
            if job.expires_at is not None and job.expires_at <= now:
                _expire(job, now)
                out.expired.append(job)
            else:
                refusal = None if gate is None else gate(job, now)
                if refusal is not None:
                    out.deferred.append((job, refusal))
                    lots.park(refusal.key, queue, job.type, job.id)
                    if job.type not in refused:
                        refused.append(job.type)
                elif full:
                    _give_back(gate, [job])
                    return False
                else:
                    out.claimed.append(job)
            decided.append(job.id)
            order[job.id] = rank
            return True

        released = lots.released(queue)
        if released:
            records = await conn.fetch(RELEASED_SQL, released, queue, now)
            if len(records) < len(released):
                lots.forget(queue)
            for i, record in enumerate(records):
                if not take(job_from_record(record), (-1, i, 0)):
                    lots.keep_released(queue, [r["id"] for r in records[i:]])
                    break

        held = sorted(lots.held(queue))
        runs = [(p, tk, ty) for p, tk, ty in
                await conn.fetch(RUNS_SQL, queue, now, MAX_RUNS, MAX_WALK, held)]
        levels: dict[int, dict[str, _Tenant]] = {}
        for priority, tk, type_name in runs:
            level = levels.setdefault(priority, {})
            tenant = level.get(tk)
            if tenant is None:
                tenant = level[tk] = _Tenant(priority, tk, [])
            tenant.types.append(type_name)
        priorities = sorted(levels, reverse=True)
        li = 0
        for _ in range(MAX_ROUNDS):
            for type_name in refused:
                for level in levels.values():
                    for tenant in level.values():
                        if type_name in tenant.types:
                            tenant.types.remove(type_name)
            want = limit - len(out.claimed)
            if want <= 0:
                break
            while li < len(priorities) and not any(t.types for t in
                                                   levels[priorities[li]].values()):
                li += 1
            if li == len(priorities):
                break
            priority = priorities[li]
            turns = self._rotation(queue, priority, levels[priority].values())
            chosen = turns[:want]
            quota = -(-want // len(chosen))
            plan = [(t.priority, t.key, type_name, quota)
                    for t in chosen for type_name in t.types]
            self._share(chosen, await self._lock(conn, queue, now, plan, decided), quota)
            place = {t.key: i for i, t in enumerate(turns)}
            for turn in range(quota):
                for tenant in chosen:
                    if turn < len(tenant.batch) and take(tenant.batch[turn], (
                            li, tenant.taken + turn, place[tenant.key])):
                        self._cursor[(queue, priority)] = tenant.key
            for tenant in chosen:
                tenant.taken += min(quota, len(tenant.batch))

        # Park the rest of what was refused, as the index parks every job it passes: each is
        # offered to the gate once (and reported deferred), then the type is held back.
        for type_name in refused:
            mine = [(p, tk) for p, tk, ty in runs if ty == type_name]
            if not mine:
                continue
            quota = -(-PARK_SWEEP // len(mine))
            swept = await self._lock(conn, queue, now,
                                     [(p, tk, type_name, quota) for p, tk in mine], decided)
            jobs = sorted(map(job_from_record, swept),
                          key=lambda j: (-j.priority, j.run_at, j.id))
            for job in jobs[:PARK_SWEEP]:
                if not take(job, (len(priorities), 0, 0), sweeping=True):
                    break
        out.claimed.sort(key=lambda j: order[j.id])

    @staticmethod
    async def _lock(conn: asyncpg.Connection, queue: str, now: float,
                    plan: list[tuple[int, str, str, int]], decided: list[str]) -> list[Any]:
        """Lock up to the quota of the oldest due jobs of each (priority, tenant, type) run."""
        return list(await conn.fetch(
            LOCK_SQL, queue, now, [p for p, _, _, _ in plan], [tk for _, tk, _, _ in plan],
            [ty for _, _, ty, _ in plan], [q for _, _, _, q in plan], decided))

    def _rotation(self, queue: str, priority: int, tenants: Iterable[_Tenant]) -> list[_Tenant]:
        """The level's tenants that still have jobs, starting after the one served last."""
        live = sorted((t for t in tenants if t.types), key=lambda t: t.key)
        last = self._cursor.get((queue, priority))
        if last is None:
            return live
        cut = bisect.bisect_right([t.key for t in live], last)
        return live[cut:] + live[:cut]

    @staticmethod
    def _share(chosen: list[_Tenant], records: list[Any], quota: int) -> None:
        """Give each chosen tenant its locked jobs, oldest first, at most `quota`; a type that
        gave fewer than asked, all of them handed out, has nothing more due for this fetch."""
        got: dict[str, list[Job]] = {t.key: [] for t in chosen}
        for record in records:
            job = job_from_record(record)
            got[job.tenant_id or ""].append(job)
        for tenant in chosen:
            jobs = got[tenant.key]
            jobs.sort(key=lambda j: (j.run_at, j.id))
            tenant.batch = jobs[:quota]
            left = {j.type for j in jobs[quota:]}
            per_type: dict[str, int] = {}
            for j in jobs:
                per_type[j.type] = per_type.get(j.type, 0) + 1
            tenant.types = [ty for ty in tenant.types
                            if per_type.get(ty, 0) >= quota or ty in left]


def _expire(job: Job, now: float) -> None:
    """A waiting job found past its expiry fails instead of starting (as `JobIndex`)."""
    job.state = JobState.FAILED
    job.finished_at = now
    job.errors_json = append_error(job.errors_json, ErrorEntry(
        attempt=job.attempts, type="Expired", message="expired before it could start", at=now,
        code="expired"))


def _give_back(gate: Gate | None, jobs: list[Job]) -> None:
    """The claim did not commit: hand the gate back what it granted these jobs (the engine's
    gate takes a grant back through `finished`)."""
    finished: Callable[..., None] | None = getattr(gate, "finished", None)
    if finished is None:
        return
    for job in jobs:
        finished(job.id, None, ran=False)
