"""What the PostgreSQL store does beyond the conformance suite: several nodes on one schema.

Each test has a schema of its own (`pg.pg_schema`); a second `PostgresStore` on the same URL is
a second node. Time is explicit (`T0`-based `now` arguments), except where PostgreSQL's own
notifications are awaited, which is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import orjson
import pytest
from conformance import LEASE_S, T0, Jobs, boom, claim, ids, insert, queue_map, settle
from pg import pg_schema, table_rows

from tickq.engine.gate import Deferral
from tickq.engine.job import Job
from tickq.engine.outcome import SettleKind
from tickq.engine.states import JobState
from tickq.errors import ConfigError
from tickq.storage import open_store
from tickq.storage.postgres import PostgresStore
from tickq.storage.postgres_node import migrations

W, A, C, F = JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED
Q = "communication"


class Nodes:
    """Opens stores on one schema; closes whatever is still open at the end."""

    def __init__(self, url: str, stack: AsyncExitStack) -> None:
        self.url = url
        self._stack = stack

    async def __call__(self, now: float = T0) -> PostgresStore:
        store = PostgresStore(self.url)
        await store.open(queue_map(), now)
        self._stack.push_async_callback(store.close)
        return store


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    async with pg_schema() as url, AsyncExitStack() as stack:
        yield Nodes(url, stack)


def email(make: Jobs, **kw: object) -> Job:
    return make(queue=Q, type="send-email", **kw)  # type: ignore[arg-type]


# --- several nodes ---------------------------------------------------------------------------


async def test_nodes_claiming_together_never_get_the_same_job(nodes: Nodes) -> None:
    first, second, third = await nodes(), await nodes(), await nodes()
    make = Jobs()
    jobs = [make(tenant=f"t{i % 7}", priority=1 + i % 3) for i in range(600)]
    await insert(first, *jobs)

    async def drain(store: PostgresStore) -> list[str]:
        got: list[str] = []
        while True:
            claimed = await claim(store, limit=17)
            if not claimed:
                return got
            got.extend(ids(claimed))
            await asyncio.sleep(0)

    runs = await asyncio.gather(drain(first), drain(second), drain(third))

    every = [job_id for run in runs for job_id in run]
    assert sorted(every) == sorted(ids(jobs))  # each claimed once, none left behind
    assert all(runs)  # all three nodes took part
    rows = await table_rows(nodes.url, "SELECT state, attempts, count(*) FROM jobs "
                                       "GROUP BY state, attempts")
    assert [tuple(r) for r in rows] == [("active", 1, 600)]


async def test_claims_of_a_node_that_is_gone_are_rescued_at_once_as_stalls(
        nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    make = Jobs()
    mine, last_try, idle = make(priority=9), make(priority=8, max_attempts=1), make(priority=1)
    await insert(first, mine, last_try, idle)
    await claim(first, limit=2)  # leases until T0 + 30

    # While the first node is there its claims are left alone, leases or not.
    assert await second.job_rescue_stuck(T0 + 1) == []

    await first.close()  # its session ends: PostgreSQL drops its node lock
    rescued = await second.job_rescue_stuck(T0 + 2)

    assert sorted(ids(rescued)) == sorted([mine.id, last_try.id])
    back = await second.job_get(mine.id)
    assert back is not None
    assert (back.state, back.stalls, back.attempts, back.lease_until) == (W, 1, 1, None)
    [entry] = back.errors
    assert (entry.code, entry.attempt, entry.at) == ("stalled", 1, T0 + 2)
    assert "node stopped" in entry.message
    assert back.needs_reconcile is False  # not claimed again yet
    spent = await second.job_get(last_try.id)
    assert spent is not None and (spent.state, spent.stalls) == (F, 1)
    assert await second.job_rescue_stuck(T0 + 3) == []  # once only
    again = await claim(second, limit=5, now=T0 + 3)
    assert ids(again) == [mine.id, idle.id]
    assert again[0].attempts == 2 and again[0].needs_reconcile


async def test_a_node_that_lost_its_lease_cannot_settle_over_the_new_claim(
        nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    job = Jobs()(max_attempts=3)
    await insert(first, job)
    [old] = await claim(first, now=T0)

    # The first node stalls (no heartbeat): the second rescues the job and runs it again.
    assert ids(await second.job_rescue_stuck(T0 + LEASE_S + 1)) == [job.id]
    [new] = await claim(second, now=T0 + LEASE_S + 2)
    assert await first.job_heartbeat([(old.id, old.claim_token)], T0 + 100) == [job.id]
    stale = settle(old, SettleKind.COMPLETE, T0 + 40, result_json=b'"old"', key_until=T0 + 40)
    assert await first.job_settle_many([stale]) == []
    assert await first.job_progress(old.id, old.claim_token, 50) is False

    [done] = await second.job_settle_many([settle(new, SettleKind.COMPLETE, T0 + 41,
                                                  result_json=b'"new"', key_until=T0 + 41)])
    assert (done.state, done.result, done.attempts, done.stalls) == (C, "new", 2, 1)
    assert await first.job_settle_many([stale]) == []
    got = await first.job_get(job.id)
    assert got is not None and got.result == "new"


async def test_one_key_enqueued_on_several_nodes_at_once_makes_one_job(nodes: Nodes) -> None:
    stores = [await nodes() for _ in range(3)]
    make = Jobs()
    candidates = [make(key="pay-race", tenant="t1") for _ in range(30)]

    batches = await asyncio.gather(*(stores[i % 3].job_insert_many([job], T0)
                                     for i, job in enumerate(candidates)))

    results = [r for batch in batches for r in batch]
    assert sum(r.created for r in results) == 1
    assert len({r.job.id for r in results}) == 1
    rows = await table_rows(stores[0].url, "SELECT count(*) FROM jobs")
    assert rows[0][0] == 1


async def test_an_insert_wakes_the_other_nodes_once_per_queue(nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    heard: dict[str, list[str]] = {"first": [], "second": []}
    woke = asyncio.Event()

    def listener(name: str) -> Callable[[str], None]:
        def hear(queue: str) -> None:
            heard[name].append(queue)
            woke.set()
        return hear

    first.on_available = listener("first")
    second.on_available = listener("second")
    make = Jobs()
    await insert(first, *(make() for _ in range(20)), email(make), email(make))

    await asyncio.wait_for(woke.wait(), 5)
    await asyncio.sleep(0.2)  # anything else in flight arrives
    assert sorted(heard["second"]) == ["communication", "money"]
    assert heard["first"] == []  # a node does not wake itself through the database


async def test_pause_is_shared_by_every_node(nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    await first.queue_set_paused("money", True)
    assert await second.queue_paused() == {"money"}
    assert (await second.queue_counts("money", T0)).paused
    await second.queue_set_paused("money", False)
    assert await first.queue_paused() == set()


async def test_nodes_opening_together_migrate_the_schema_once(nodes: Nodes) -> None:
    await asyncio.gather(*(nodes() for _ in range(4)))
    rows = await table_rows(nodes.url, "SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == [n for n, _ in migrations()]


async def test_leadership_moves_when_the_leader_goes(nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    assert await first.try_lead()
    assert await first.try_lead()  # kept
    assert not await second.try_lead()
    await first.close()
    assert await second.try_lead()


async def test_a_leader_whose_session_ends_is_replaced(nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    assert await first.try_lead()

    await table_rows(nodes.url, "SELECT pg_terminate_backend($1)", first.node.server_pid)
    for _ in range(100):  # the server ends the session within milliseconds
        if await second.try_lead():
            break
        await asyncio.sleep(0.02)

    assert await second.try_lead()
    assert not await first.try_lead()


# --- claim order and parking -------------------------------------------------------------------


async def test_tenants_take_turns_within_a_priority(nodes: Nodes) -> None:
    store = await nodes()
    make = Jobs()
    big = [make(tenant="big", run_at=T0 - 100 + i) for i in range(300)]
    await insert(store, *big)
    small = [make(tenant="small-a"), make(tenant="small-b"), make(tenant=None)]
    await insert(store, *small)
    urgent = make(tenant="big", priority=10)
    await insert(store, urgent)

    first = await claim(store, limit=5)
    # Priority first; then one job per tenant per turn, each tenant's oldest first.
    assert first[0].id == urgent.id
    assert sorted(j.tenant_id or "" for j in first[1:]) == ["", "big", "small-a", "small-b"]
    assert [j.id for j in first if j.tenant_id == "big" and j.priority == 5] == [big[0].id]

    rest = await claim(store, limit=50)
    assert ids(rest) == ids(big[1:51])  # the others are served; big's backlog in order


async def test_a_tenant_arriving_behind_a_backlog_is_served_in_the_next_turn(
        nodes: Nodes) -> None:
    store = await nodes()
    make = Jobs()
    await insert(store, *(make(tenant="big") for _ in range(200)))
    assert len(await claim(store, limit=10)) == 10
    late = make(tenant="late")
    await insert(store, late)

    nxt = await claim(store, limit=2)

    assert late.id in ids(nxt)


async def test_a_refused_type_is_parked_and_jobs_of_other_types_behind_it_run(
        nodes: Nodes) -> None:
    store = await nodes()
    make = Jobs()
    sms = [make(queue=Q, type="send-sms", priority=10) for _ in range(40)]
    mails = [email(make, priority=1) for _ in range(5)]
    await insert(store, *sms, *mails)
    stopped = True

    def gate(job: Job, now: float) -> Deferral | None:
        return Deferral("twilio", "stopped") if job.type == "send-sms" and stopped else None

    res = await store.job_fetch_available(Q, 5, T0, LEASE_S, gate)

    assert ids(res.claimed) == ids(mails)
    assert sorted(ids(j for j, _ in res.deferred)) == sorted(ids(sms))  # each reported once
    assert {d for _, d in res.deferred} == {Deferral("twilio", "stopped")}
    again = await store.job_fetch_available(Q, 5, T0 + 1, LEASE_S, gate)
    assert (again.claimed, again.deferred) == ([], [])  # held back: not even looked at
    assert await store.next_run_at(Q) is None  # parked jobs are due, not delayed
    rows = await table_rows(store.url, "SELECT state, attempts, count(*) FROM jobs "
                                       "WHERE type = 'send-sms' GROUP BY state, attempts")
    assert [tuple(r) for r in rows] == [("waiting", 0, 40)]  # nothing written

    stopped = False
    assert await store.job_unpark("twilio", 3, T0 + 2) == 3
    back = await store.job_fetch_available(Q, 10, T0 + 2, LEASE_S, gate)
    assert ids(back.claimed) == ids(sms[:3])  # the lot's first three, nothing else yet
    assert await store.job_unpark("twilio", 1000, T0 + 3) == 37
    assert await store.job_unpark("twilio", 1000, T0 + 3) == 0
    rest = await store.job_fetch_available(Q, 100, T0 + 3, LEASE_S, gate)
    assert sorted(ids(rest.claimed)) == sorted(ids(sms[3:]))


async def test_a_new_job_of_a_parked_type_waits_for_its_lot(nodes: Nodes) -> None:
    store = await nodes()
    make = Jobs()
    first = make(queue=Q, type="send-sms")
    await insert(store, first)

    def refuse(job: Job, now: float) -> Deferral | None:
        return Deferral("twilio", "no_tokens")

    parked = (await store.job_fetch_available(Q, 5, T0, LEASE_S, refuse)).deferred
    assert [job.id for job, _ in parked] == [first.id]
    later = make(queue=Q, type="send-sms")
    await insert(store, later)
    assert (await store.job_fetch_available(Q, 5, T0, LEASE_S, refuse)).deferred == []
    assert await store.job_unpark("twilio", 5, T0 + 1) == 1
    res = await store.job_fetch_available(Q, 5, T0 + 1, LEASE_S, None)
    assert ids(res.claimed) == [first.id, later.id]


# --- durability and configuration ---------------------------------------------------------------


async def test_background_jobs_stay_in_the_node_that_took_them(nodes: Nodes) -> None:
    first, second = await nodes(), await nodes()
    make = Jobs()
    bg = make(queue="background", type="analytics-track")
    await insert(first, bg)

    assert (await first.job_get(bg.id)) is not None
    assert await second.job_get(bg.id) is None
    assert await claim(second, "background") == []
    assert ids(await claim(first, "background")) == [bg.id]
    rows = await table_rows(first.url, "SELECT count(*) FROM jobs")
    assert rows[0][0] == 0


async def test_rows_keep_exact_values(nodes: Nodes) -> None:
    store = await nodes()
    job = Jobs()(run_at=T0 + 0.1 + 0.2, data={"a": [1, 2.5]}, key="k", tenant="t")
    await insert(store, job)
    [running] = await claim(store, now=T0 + 1)
    await store.job_settle_many([settle(running, SettleKind.RETRY, T0 + 1.1, run_at=T0 + 2,
                                        error=boom(running, T0 + 1.1, "é ☃ \"quoted\""))])
    rows = await table_rows(store.url, "SELECT run_at, data, errors FROM jobs")
    run_at, data, errors = rows[0]
    assert run_at == T0 + 2
    assert bytes(data) == orjson.dumps({"a": [1, 2.5]})
    assert orjson.loads(errors) == [{"attempt": 1, "type": "RetryableError",
                                     "message": "é ☃ \"quoted\"", "at": T0 + 1.1,
                                     "code": "E1"}]


async def test_open_store_builds_a_postgres_store_for_postgresql_urls() -> None:
    assert isinstance(open_store("postgresql://127.0.0.1:5432/test"), PostgresStore)
    assert isinstance(open_store("postgres://127.0.0.1:5432/test"), PostgresStore)


async def test_an_unreachable_database_is_a_clear_error() -> None:
    store = PostgresStore("postgresql://tickq:secret@127.0.0.1:1/test")
    with pytest.raises(ConfigError) as info:
        await store.open(queue_map(), T0)
    assert "cannot connect" in info.value.message
    assert "127.0.0.1:1" in info.value.message
    assert "secret" not in info.value.message
    assert not await store.ping()


async def test_a_schema_newer_than_this_code_is_refused(nodes: Nodes) -> None:
    store = await nodes()
    await table_rows(nodes.url, "INSERT INTO schema_version (version) VALUES (999)")
    await store.close()

    with pytest.raises(ConfigError) as info:
        await nodes()

    assert "version 999" in info.value.message
    assert "upgrade tickq" in info.value.message
