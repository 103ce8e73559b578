"""The `jobs` table of the PostgreSQL store: its columns, the statements that write it, and
records turned back into `Job`s.

Every state change is one statement over a whole batch (arrays bound once and `unnest`ed), and
every change to a claimed job names its claim token in the WHERE clause: a write from a node
whose claim was lost matches no row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tickq.engine.job import ErrorEntry, Job
from tickq.engine.jsonbytes import dumps_kept
from tickq.engine.outcome import Settle, SettleKind
from tickq.engine.states import JobState

#: what a job read back is made of, in `job_from_record` order
COLUMNS = ("id, queue, type, data, tenant_id, user_id, priority, state, attempts, max_attempts, "
           "run_at, lease_until, idempotency_key, progress, result, errors, created_at, "
           "started_at, finished_at, expires_at, callback_url, ordering_key, stalls, key_until, "
           "claim_token")
#: the same, qualified by the alias `j` (statements that join the table with a batch)
J_COLUMNS = ", ".join(f"j.{c.strip()}" for c in COLUMNS.split(","))

_STATES = {s.value: s for s in JobState}


def _make_loader() -> Callable[[Sequence[Any]], Job]:
    """`Job` from a record: straight-line attribute sets (records come by the hundred per
    claim; keyword construction cost three times as much)."""
    attrs = [c.strip() for c in COLUMNS.split(",")]
    rename = {"data": "data_json", "result": "result_json", "errors": "errors_json"}
    lines = ["def load(r):", "    j = new(Job)"]
    for i, col in enumerate(attrs):
        value = f"STATES[r[{i}]]" if col == "state" else f"r[{i}]"
        lines.append(f"    j.{rename.get(col, col)} = {value}")
    lines.append("    return j")
    namespace: dict[str, Any] = {"Job": Job, "new": object.__new__, "STATES": _STATES}
    exec("\n".join(lines), namespace)
    loader: Callable[[Sequence[Any]], Job] = namespace["load"]
    return loader


job_from_record = _make_loader()

#: the SQL types of COLUMNS, in order (the arrays of INSERT_SQL)
_INSERT_TYPES = ("text", "text", "text", "bytea", "text", "text", "int4", "text", "int4", "int4",
                 "float8", "float8", "text", "int4", "bytea", "bytea", "float8", "float8",
                 "float8", "float8", "text", "text", "int4", "float8", "int8")
_N = len(_INSERT_TYPES)

#: new jobs, one array per column; a job whose key another job holds is skipped (the unique
#: index decides, atomically, also between concurrent inserts and within the batch: the first
#: of two with one key wins). One notification per queue that got a job, sent at commit.
INSERT_SQL = (
    "WITH ins AS (INSERT INTO jobs (" + COLUMNS + ", key_hold) "
    "SELECT " + ", ".join(f"v.c{i}" for i in range(_N)) + ", v.c12 IS NOT NULL "
    "FROM unnest(" + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_INSERT_TYPES)) + ") "
    "WITH ORDINALITY AS v(" + ", ".join(f"c{i}" for i in range(_N)) + ", ord) ORDER BY v.ord "
    "ON CONFLICT ((coalesce(tenant_id, '')), idempotency_key) WHERE key_hold DO NOTHING "
    "RETURNING id, queue) "
    f"SELECT id, (SELECT count(pg_notify(${_N + 1}, q || ' ' || ${_N + 2})) "
    "FROM (SELECT DISTINCT queue AS q FROM ins) d) FROM ins")


def insert_args(jobs: Sequence[Job]) -> list[list[Any]]:
    """The column arrays of INSERT_SQL for `jobs`: one tuple per job, transposed by `zip` in C
    (appending value by value cost more than the rest of building the statement)."""
    if not jobs:
        return [[] for _ in range(_N)]
    rows = [(j.id, j.queue, j.type, j.data_json, j.tenant_id, j.user_id, j.priority,
             j.state.value, j.attempts, j.max_attempts, j.run_at, j.lease_until,
             j.idempotency_key, j.progress, j.result_json, j.errors_json, j.created_at,
             j.started_at, j.finished_at, j.expires_at, j.callback_url, j.ordering_key,
             j.stalls, j.key_until, j.claim_token) for j in jobs]
    return [list(col) for col in zip(*rows, strict=True)]


#: the jobs holding the given (tenant, key) pairs
HOLDERS_SQL = (f"SELECT {COLUMNS} FROM jobs WHERE key_hold AND "
               "(coalesce(tenant_id, ''), idempotency_key) IN "
               "(SELECT * FROM unnest($1::text[], $2::text[]))")

#: completed jobs among `ids` whose hold has ended by `now` let go of their keys
RELEASE_ENDED_SQL = ("UPDATE jobs SET key_hold = false WHERE id = ANY($1::text[]) AND key_hold "
                     "AND state = 'completed' AND coalesce(key_until, finished_at) <= $2")


def hold_ended(job: Job, now: float) -> bool:
    """A completed holder's hold is over (the rule RELEASE_ENDED_SQL applies)."""
    until = job.key_until if job.key_until is not None else job.finished_at
    return job.state is JobState.COMPLETED and until is not None and until <= now


#: the ends of runs. Each settle is one row of the batch; it applies only while the job is still
#: active under the settle's claim token.
SETTLE_SQL = (
    "UPDATE jobs j SET state = v.state, lease_until = NULL, claimed_by = NULL, "
    "attempts = j.attempts - v.refund, "
    "run_at = CASE WHEN v.state = 'waiting' THEN v.run_at ELSE j.run_at END, "
    "finished_at = CASE WHEN v.state = 'waiting' THEN j.finished_at ELSE v.at END, "
    "result = CASE WHEN v.state = 'completed' THEN v.result ELSE j.result END, "
    "progress = CASE WHEN v.state = 'completed' THEN 100 ELSE j.progress END, "
    "key_until = CASE WHEN v.state = 'completed' AND j.idempotency_key IS NOT NULL "
    "THEN v.key_until ELSE j.key_until END, "
    "key_hold = CASE WHEN v.state IN ('failed', 'cancelled') THEN false ELSE j.key_hold END, "
    "errors = append_error(j.errors, v.error) "
    "FROM unnest($1::text[], $2::int8[], $3::text[], $4::float8[], $5::float8[], $6::int4[], "
    "$7::bytea[], $8::bytea[], $9::float8[]) "
    "AS v(id, token, state, at, run_at, refund, result, error, key_until) "
    "WHERE j.id = v.id AND j.state = 'active' AND j.claim_token = v.token "
    f"RETURNING {J_COLUMNS}")

_SETTLED_STATE = {SettleKind.COMPLETE: JobState.COMPLETED, SettleKind.RETRY: JobState.WAITING,
                  SettleKind.SNOOZE: JobState.WAITING, SettleKind.FAIL: JobState.FAILED,
                  SettleKind.CANCEL: JobState.CANCELLED}


def settle_args(settles: Sequence[Settle]) -> list[list[Any]]:
    """The arrays of SETTLE_SQL, one row per settle (the first settle of a job wins, as it
    would applied one by one: after it the job is no longer active under that claim)."""
    cols: list[list[Any]] = [[] for _ in range(9)]
    seen: set[str] = set()
    for s in settles:
        if s.job_id in seen:
            continue
        seen.add(s.job_id)
        kind = s.kind
        error = s.error if kind in (SettleKind.RETRY, SettleKind.FAIL) else None
        row = (s.job_id, s.token, _SETTLED_STATE[kind].value, s.at,
               s.run_at if s.run_at is not None else s.at,
               1 if kind is SettleKind.SNOOZE else 0,
               s.result_json if kind is SettleKind.COMPLETE else None,
               None if error is None else dumps_kept(error.to_dict()),
               s.key_until)
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


#: claimed jobs: attempt spent, new token, lease, owner
CLAIM_SQL = ("UPDATE jobs SET state = 'active', attempts = attempts + 1, "
             "claim_token = claim_token + 1, lease_until = $2, started_at = $3, claimed_by = $4 "
             "WHERE id = ANY($1::text[])")

#: waiting jobs found past their expiry: failed, key let go, error history as given
EXPIRE_SQL = ("UPDATE jobs j SET state = 'failed', finished_at = $3, lease_until = NULL, "
              "key_hold = false, errors = v.errors "
              "FROM unnest($1::text[], $2::bytea[]) AS v(id, errors) WHERE j.id = v.id")

#: renew the leases of claims still held; answers the ids whose claim still matched when the
#: statement began (a data-modifying WITH runs to completion whether read or not). Rows another
#: transaction holds (a settle or rescue of the same job) are skipped rather than waited for:
#: waiting could deadlock with a settle of the same batch.
HEARTBEAT_SQL = (
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::int8[]) AS v(id, token)), "
    "held AS (SELECT j.id FROM jobs j JOIN v ON j.id = v.id "
    "WHERE j.state = 'active' AND j.claim_token = v.token FOR UPDATE OF j SKIP LOCKED), "
    "renewed AS (UPDATE jobs SET lease_until = $3 FROM held WHERE jobs.id = held.id "
    "RETURNING jobs.id) "
    "SELECT j.id FROM jobs j JOIN v ON j.id = v.id "
    "WHERE j.state = 'active' AND j.claim_token = v.token")


def stall_sql(where: str) -> str:
    """Active jobs matching `where` back to waiting (or failed when out of attempts), counted
    as stalled, with an error entry whose tail (after the attempt) is bound as $2 and whose time
    is $1. Rows another node is rescuing at the same time are skipped."""
    out = "j.attempts >= j.max_attempts"
    return (
        "UPDATE jobs j SET stalls = j.stalls + 1, lease_until = NULL, claimed_by = NULL, "
        "errors = append_error(j.errors, "
        "convert_to('{\"attempt\":' || j.attempts || ',', 'UTF8') || $2::bytea), "
        f"state = CASE WHEN {out} THEN 'failed' ELSE 'waiting' END, "
        f"finished_at = CASE WHEN {out} THEN $1 ELSE j.finished_at END, "
        f"run_at = CASE WHEN {out} THEN j.run_at ELSE $1 END, "
        f"key_hold = CASE WHEN {out} THEN false ELSE j.key_hold END "
        f"FROM (SELECT id FROM jobs WHERE state = 'active' AND {where} "
        "FOR UPDATE SKIP LOCKED) s "
        f"WHERE j.id = s.id RETURNING {J_COLUMNS}")


#: leases that ran out
RESCUE_EXPIRED_SQL = stall_sql("lease_until < $1")
#: the claims of nodes that are gone ($3: their ids)
RESCUE_NODES_SQL = stall_sql("claimed_by = ANY($3::int8[])")


def stall_tail(now: float, why: str) -> bytes:
    """The part of a stall's error entry after `{"attempt":N,` (the attempt is the row's)."""
    whole = dumps_kept(ErrorEntry(attempt=0, type="Stalled", message=why, at=now,
                                  code="stalled").to_dict())
    return whole[len(b'{"attempt":0,'):]


GET_SQL = f"SELECT {COLUMNS} FROM jobs WHERE id = $1"

CANCEL_SQL = ("UPDATE jobs SET state = 'cancelled', finished_at = $2, key_hold = false "
              f"WHERE id = $1 AND state = 'waiting' RETURNING {COLUMNS}")

PROGRESS_SQL = ("UPDATE jobs SET progress = $3 WHERE id = $1 AND state = 'active' "
                "AND claim_token = $2")

DISCARD_SQL = f"DELETE FROM jobs WHERE id = $1 AND state = 'failed' RETURNING {COLUMNS}"

UPDATE_RESULT_SQL = ("UPDATE jobs SET result = $2 WHERE id = $1 "
                     "AND state IN ('completed', 'failed', 'cancelled') "
                     f"RETURNING {COLUMNS}")

#: finished jobs the prune rules match, a bounded number per statement ($5: how many)
PRUNE_SQL = (
    "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j, "
    "unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS r(queue, state, before, type) "
    "WHERE j.queue = r.queue AND j.state = r.state AND j.finished_at < r.before "
    "AND (r.type IS NULL OR j.type = r.type) "
    "AND (j.key_until IS NULL OR j.key_until <= r.before) LIMIT $5)")

COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'waiting'), "
    "(SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'waiting' AND run_at > $2), "
    "(SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'active'), "
    "(SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'completed'), "
    "(SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'failed'), "
    "(SELECT count(*) FROM jobs WHERE queue = $1 AND state = 'cancelled'), "
    "coalesce((SELECT paused FROM queue_state WHERE name = $1), false)")

NEXT_RUN_SQL = ("SELECT run_at FROM jobs WHERE queue = $1 AND state = 'waiting' AND run_at > $2 "
                "ORDER BY run_at LIMIT 1")

OLDEST_DUE_SQL = ("SELECT run_at FROM jobs WHERE queue = $1 AND state = 'waiting' "
                  "AND run_at <= $2 ORDER BY run_at LIMIT 1")

#: completed jobs whose hold has ended let go of their keys, and forget `key_until` once past
RELEASE_KEYS_SQL = (
    "WITH done AS (UPDATE jobs SET key_hold = false, "
    "key_until = CASE WHEN key_until <= $1 THEN NULL ELSE key_until END "
    "WHERE key_hold AND state = 'completed' "
    "AND (key_until <= $1 OR (key_until IS NULL AND finished_at <= $1)) "
    "RETURNING 1) SELECT count(*) FROM done")

LIVE_COUNT_SQL = "SELECT count(*) FROM jobs WHERE state IN ('waiting', 'active')"
