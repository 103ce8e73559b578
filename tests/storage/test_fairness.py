"""Properties of the scheduling index's claim order: tenants in turn, priorities in order, and
the provider gate parking what it refuses without holding up the jobs behind it.

Driven directly on `JobIndex` with hand-built `Job` records and an explicit `now`, so every
example is exact and fast (a backlog of 10,000 jobs costs a few milliseconds).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from tickq.engine.gate import Deferral
from tickq.engine.job import Job
from tickq.engine.queues import DEFAULT_QUEUES
from tickq.engine.states import JobState
from tickq.storage.index import JobIndex

T0 = 1_800_000_000.0
Q = "communication"
LEASE_S = 30.0
WAITING, ACTIVE = JobState.WAITING, JobState.ACTIVE


def new_index() -> JobIndex:
    return JobIndex({q.name: q for q in DEFAULT_QUEUES})


def make_job(seq: int, tenant: str | None = None, *, priority: int = 5, type: str = "work",
             run_at: float = T0) -> Job:
    # Ids grow with `seq`, as generated ids grow with enqueue order.
    return Job(id=f"job-{seq:08d}", queue=Q, type=type, data_json=b"{}", priority=priority,
               max_attempts=3, run_at=run_at, created_at=T0, tenant_id=tenant)


def insert(index: JobIndex, jobs: Sequence[Job], now: float) -> None:
    """What the memory store does on enqueue: register, then make the jobs visible."""
    for job, created in index.insert_many(jobs, now):
        assert created and isinstance(job, Job)
        index.schedule(job, now)


def claim(index: JobIndex, limits: Iterable[int], now: float, upto: int) -> list[Job]:
    """Claim in fetches of the given sizes (cycled) until `upto` jobs or nothing is left."""
    sizes = list(limits)
    claimed: list[Job] = []
    i = 0
    while len(claimed) < upto:
        got, expired, deferred = index.fetch(Q, min(sizes[i % len(sizes)], upto - len(claimed)),
                                             now, LEASE_S)
        assert expired == [] and deferred == []
        if not got:
            break
        claimed.extend(got)
        i += 1
    return claimed


def dispatch_key(job: Job) -> tuple[int, float, str]:
    """The claim order within one tenant: highest priority, then oldest run_at, then id."""
    return (-job.priority, job.run_at, job.id)


# --- tenants in turn ---------------------------------------------------------------------------


@st.composite
def backlogs(draw: st.DrawFn) -> list[int]:
    """Backlog sizes of 2..5 tenants at one priority: at least one tenant with a single job,
    and sometimes one with 10,000."""
    sizes = draw(st.lists(st.integers(1, 40), min_size=2, max_size=5))
    sizes[draw(st.integers(0, len(sizes) - 1))] = 1
    if draw(st.booleans()):
        big = draw(st.integers(0, len(sizes) - 1))
        if sizes.count(1) > 1 or sizes[big] != 1:
            sizes[big] = 10_000
    return sizes


def insert_shuffled(index: JobIndex, sizes: Sequence[int], rnd: random.Random,
                    cuts: int) -> list[Job]:
    """Every tenant's backlog, interleaved in a random order and inserted in `cuts + 1`
    batches. Returns the jobs in insertion order."""
    owners = [t for t, size in enumerate(sizes) for _ in range(size)]
    rnd.shuffle(owners)
    jobs = [make_job(seq, f"tenant-{t}") for seq, t in enumerate(owners)]
    bounds = sorted(rnd.randrange(len(jobs) + 1) for _ in range(cuts))
    for lo, hi in zip([0, *bounds], [*bounds, len(jobs)], strict=True):
        insert(index, jobs[lo:hi], T0)
    return jobs


@settings(max_examples=60, deadline=None)
@given(sizes=backlogs(), rnd=st.randoms(use_true_random=False), cuts=st.integers(0, 4),
       limits=st.lists(st.integers(1, 8), min_size=1, max_size=4))
def test_every_tenant_gets_a_turn_within_the_first_round(
        sizes: list[int], rnd: random.Random, cuts: int, limits: list[int]) -> None:
    index = new_index()
    insert_shuffled(index, sizes, rnd, cuts)
    tenants = len(sizes)
    claimed = claim(index, limits, T0, upto=min(sum(sizes), 40 * tenants))

    owners = [j.tenant_id for j in claimed]
    # The first round serves every tenant once, whatever the sizes and the insertion order;
    # in particular the single job of a one-job tenant is among the first `tenants` claims.
    assert sorted(owners[:tenants]) == sorted(f"tenant-{t}" for t in range(tenants))
    for t, size in enumerate(sizes):
        if size == 1:
            assert owners.index(f"tenant-{t}") < tenants
    # Quantum of one job: two tenants that both still have jobs are never more than one
    # claim apart.
    remaining = Counter({f"tenant-{t}": size for t, size in enumerate(sizes)})
    served: Counter[str] = Counter()
    for owner in owners:
        assert owner is not None
        served[owner] += 1
        remaining[owner] -= 1
        live = [served[t] for t in remaining if remaining[t] > 0]
        assert not live or max(live) - min(live) <= 1
    # Within a tenant, oldest first.
    for t in range(tenants):
        mine = [j.id for j in claimed if j.tenant_id == f"tenant-{t}"]
        assert mine == sorted(mine)
    assert all(j.state is ACTIVE and j.attempts == 1 for j in claimed)


@settings(max_examples=60, deadline=None)
@given(sizes=backlogs(), rnd=st.randoms(use_true_random=False),
       before=st.integers(0, 60), limit=st.integers(1, 3))
def test_a_tenant_arriving_mid_backlog_waits_at_most_one_round(
        sizes: list[int], rnd: random.Random, before: int, limit: int) -> None:
    """A tenant's single job enqueued while others' backlogs are being served is claimed within
    as many claims as there are tenants with ready jobs, itself included."""
    index = new_index()
    jobs = insert_shuffled(index, sizes, rnd, cuts=1)
    claimed = claim(index, [limit], T0, upto=min(before, len(jobs)))
    left = Counter(j.tenant_id for j in jobs) - Counter(j.tenant_id for j in claimed)
    with_ready = sum(1 for n in left.values() if n > 0) + 1

    newcomer = make_job(len(jobs), "newcomer", run_at=T0 + 1)
    insert(index, [newcomer], T0 + 1)
    after = claim(index, [limit], T0 + 1, upto=with_ready)

    assert newcomer.id in [j.id for j in after]
    assert newcomer.state is ACTIVE


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(2, 30), min_size=1, max_size=4),
       rnd=st.randoms(use_true_random=False),
       steps=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), min_size=1,
                      max_size=60))
def test_newcomers_do_not_push_back_tenants_already_waiting(
        sizes: list[int], rnd: random.Random, steps: list[tuple[int, int]]) -> None:
    """New tenants keep arriving (0-2 between fetches): a tenant that was just served is served
    again within as many claims as there were tenants with ready jobs right after its claim,
    itself included. Newcomers queue behind it; they do not jump ahead."""
    index = new_index()
    jobs = insert_shuffled(index, sizes, rnd, cuts=0)
    left = Counter(j.tenant_id for j in jobs)
    seq = len(jobs)
    now = T0
    position = 0
    #: tenant -> the claim position by which its next claim is due
    due: dict[str | None, int] = {}
    for arrivals, limit in steps:
        now += 0.001
        newcomers = [make_job(seq + k, f"new-{seq + k}", run_at=now) for k in range(arrivals)]
        seq += arrivals
        insert(index, newcomers, now)
        left.update(j.tenant_id for j in newcomers)
        for job in index.fetch(Q, limit, now, LEASE_S)[0]:
            position += 1
            tenant = job.tenant_id
            assert position <= due.get(tenant, position), f"{tenant} pushed back"
            left[tenant] -= 1
            if left[tenant] > 0:
                due[tenant] = position + sum(1 for n in left.values() if n > 0)
            else:
                due.pop(tenant, None)
        # Nobody's turn is overdue, even if the run ends here.
        assert all(position < at for at in due.values())


# --- priorities ----------------------------------------------------------------------------


insert_ops = st.lists(st.tuples(st.integers(1, 10), st.sampled_from(["a", "b", "c", None]),
                                st.floats(-1.0, 1.0)), min_size=1, max_size=25)
fetch_ops = st.integers(1, 12)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.one_of(insert_ops, fetch_ops), min_size=1, max_size=20))
def test_claims_never_go_out_of_priority_order(ops: list[list[tuple[int, str | None, float]] | int]
                                                ) -> None:
    """Interleaved inserts (some delayed) and fetches: every fetch takes the best jobs there are:
    nothing left ready outranks anything it claimed, and it claims in priority order."""
    index = new_index()
    now = T0
    seq = 0
    unclaimed: dict[str, Job] = {}
    for op in ops:
        now += 0.25
        if isinstance(op, list):
            batch = []
            for priority, tenant, offset in op:
                batch.append(make_job(seq, tenant, priority=priority, run_at=now + offset))
                seq += 1
            insert(index, batch, now)
            unclaimed.update((j.id, j) for j in batch)
            continue
        claimed, expired, deferred = index.fetch(Q, op, now, LEASE_S)
        assert expired == [] and deferred == []
        for job in claimed:
            del unclaimed[job.id]
            assert job.run_at <= now
        prios = [j.priority for j in claimed]
        assert prios == sorted(prios, reverse=True)
        ready = [j for j in unclaimed.values() if j.run_at <= now]
        if len(claimed) < op:
            assert ready == []
        elif ready and claimed:
            assert max(j.priority for j in ready) <= min(prios)
        # Within one priority and tenant: oldest run_at, then id.
        by_lane: dict[tuple[int, str | None], list[Job]] = {}
        for job in claimed:
            by_lane.setdefault((job.priority, job.tenant_id), []).append(job)
        for lane in by_lane.values():
            assert [dispatch_key(j) for j in lane] == sorted(dispatch_key(j) for j in lane)


# --- the provider gate ---------------------------------------------------------------------


class BudgetGate:
    """Lets through `budget[p]` jobs of provider `p` (the job type names it), then refuses."""

    def __init__(self, budget: dict[str, int]) -> None:
        self.budget = dict(budget)
        self.seen: list[str] = []

    def __call__(self, job: Job, now: float) -> Deferral | None:
        self.seen.append(job.id)
        if self.budget.get(job.type, 0) > 0:
            self.budget[job.type] -= 1
            return None
        return Deferral(job.type, "no_tokens")


PROVIDERS = ["p0", "p1", "p2", "p3"]


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(st.tuples(st.sampled_from(PROVIDERS), st.integers(1, 10),
                                st.floats(-5.0, 0.0)), min_size=1, max_size=60),
       budget=st.fixed_dictionaries({p: st.integers(0, 8) for p in PROVIDERS}),
       limit=st.integers(1, 70), unpark_n=st.integers(0, 12), cancel=st.integers(0, 3),
       unpark_of=st.sampled_from(PROVIDERS))
def test_refused_jobs_park_without_holding_up_other_providers(
        specs: list[tuple[str, int, float]], budget: dict[str, int], limit: int,
        unpark_n: int, cancel: int, unpark_of: str) -> None:
    index = new_index()
    now = T0
    jobs = [make_job(seq, type=provider, priority=priority, run_at=now + offset)
            for seq, (provider, priority, offset) in enumerate(specs)]
    insert(index, jobs, now)
    order = sorted(jobs, key=dispatch_key)

    # What the fetch must do: walk the dispatch order, claim what the gate lets through, park
    # what it refuses, and go on behind it until `limit` jobs are claimed.
    left = dict(budget)
    want_claimed: list[str] = []
    want_parked: list[str] = []
    want_seen: list[str] = []
    for job in order:
        if len(want_claimed) == limit:
            break
        want_seen.append(job.id)
        if left[job.type] > 0:
            left[job.type] -= 1
            want_claimed.append(job.id)
        else:
            want_parked.append(job.id)

    gate = BudgetGate(budget)
    claimed, expired, deferred = index.fetch(Q, limit, now, LEASE_S, gate)

    assert expired == []
    assert [j.id for j in claimed] == want_claimed
    assert [j.id for j, _ in deferred] == want_parked
    assert gate.seen == want_seen  # asked once per job, in dispatch order
    assert all(why == Deferral(j.type, "no_tokens") for j, why in deferred)
    for job, _ in deferred:
        assert job.state is WAITING and job.attempts == 0
    for job in claimed:
        assert job.state is ACTIVE and job.attempts == 1
    parked_of = Counter(j.type for j, _ in deferred)
    for provider in PROVIDERS:
        assert index.parked(provider) == parked_of[provider]

    # Parked jobs are out of the way: a fetch with no gate at all takes only the others.
    rest = index.fetch(Q, 1_000, now, LEASE_S)[0]
    done = {j.id for j in claimed}
    parked_ids = {j.id for j, _ in deferred}
    assert [j.id for j in rest] == [j.id for j in order if j.id not in done | parked_ids]

    # Cancel a few parked jobs of the lot: their entries are stale and must not count.
    lot = sorted((j for j, _ in deferred if j.type == unpark_of), key=dispatch_key)
    for job in lot[:cancel]:
        index.cancel(job, now)
    cancel_n = len(lot[:cancel])
    live = lot[cancel:]
    back = index.unpark(unpark_of, unpark_n, now)
    assert back == min(unpark_n, len(live)) <= unpark_n
    # They come back best first and are claimed in dispatch order.
    again = index.fetch(Q, 1_000, now, LEASE_S)[0]
    assert [j.id for j in again] == [j.id for j in live[:back]]
    assert all(j.attempts == 1 for j in again)
    # The cancelled entries were the best of the lot, so any unpark skipped them on its way.
    assert index.parked(unpark_of) == len(live) - back + (0 if unpark_n else cancel_n)
