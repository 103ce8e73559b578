"""The background integration through a live engine, on memory and on a SQLite file:
analytics events written in batches, reports built and stored, cleanup that removes what is
old and nothing else."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tickq.clock import FakeClock
from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.producer import JobSpec
from tickq.engine.queues import DEFAULT_QUEUES
from tickq.engine.states import JobState
from tickq.errors import PermanentError, RetryableError
from tickq.processors import Integrations
from tickq.processors.analytics import EventBatcher
from tickq.processors.background import BackgroundIntegration
from tickq.settings import load_settings
from tickq.storage.base import AnalyticsEvent, Report, Store
from tickq.storage.memory import MemoryStore
from tickq.storage.sqlite import SqliteStore

DAY = 86_400.0
#: 2025-03-10T12:00:00Z: "now" for most tests
DAY0 = datetime(2025, 3, 10, 12, tzinfo=UTC).timestamp()
NOW_ISO = "2025-03-10T12:00:00.000Z"
QUEUES = {q.name: q for q in DEFAULT_QUEUES}


class CountingMemoryStore(MemoryStore):
    """A memory store that remembers the size of every `events_append` call."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        self.appends.append(len(events))
        await super().events_append(events)


class CountingSqliteStore(SqliteStore):
    """A SQLite store that remembers the size of every `events_append` call."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.appends: list[int] = []

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        self.appends.append(len(events))
        await super().events_append(events)


class Backend:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.path = str(folder / "tickq.db")
        self.data_dir = folder / "data"

    def store(self) -> CountingMemoryStore | CountingSqliteStore:
        return CountingMemoryStore() if self.name == "memory" else CountingSqliteStore(self.path)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@asynccontextmanager
async def background_engine(store: Store, data_dir: Path, *, clock: FakeClock | None = None,
                            processors: dict[str, Callable[[Job], Any]] | None = None
                            ) -> AsyncIterator[tuple[Engine, BackgroundIntegration]]:
    """An engine with the background integration installed and started; lease maintenance is
    held off so that clock jumps do not stall running jobs."""
    engine = Engine(store, clock=clock or FakeClock(DAY0), shutdown_grace_s=1.0,
                    maintenance_interval_s=3600, concurrency={"background": 200})
    for name, fn in (processors or {}).items():
        engine.register(name, fn)
    settings = load_settings({"TICKQ_DATABASE_URL": "memory://",
                              "TICKQ_DATA_DIR": str(data_dir)})
    background = BackgroundIntegration(settings, engine)
    integrations = Integrations(engine, [background])
    integrations.install()
    await integrations.start()
    await engine.start()
    try:
        yield engine, background
    finally:
        await engine.stop()
        await integrations.close()


async def run(engine: Engine, type: str, data: dict[str, Any], *, tenant: str | None = "t1",
              user: str | None = "u1") -> Job:
    """Enqueue one job and wait until it is finished."""
    job = await engine.enqueue(type, data, tenant_id=tenant, user_id=user)
    return await engine.wait(job.id, timeout=10)


async def run_ok(engine: Engine, type: str, data: dict[str, Any], **who: Any) -> Any:
    job = await run(engine, type, data, **who)
    assert job.state is JobState.COMPLETED, job.errors
    return job.result


async def dead_letter(engine: Engine, type: str, data: dict[str, Any]) -> tuple[str, str]:
    """Run a job that must fail for good; its last error's (code, message)."""
    job = await run(engine, type, data)
    assert job.state is JobState.FAILED
    assert job.attempts == 1  # permanent: no retry
    last = job.errors[-1]
    assert last.code is not None
    return last.code, last.message


def track(event_type: str, timestamp: str, venue: str | None = "v1", **extra: Any
          ) -> dict[str, Any]:
    data: dict[str, Any] = {"eventType": event_type, "timestamp": timestamp, **extra}
    if venue is not None:
        data["venueId"] = venue
    return data


def report_data(report_type: str, fmt: str = "json", start: str = "2025-03-10",
                end: str = "2025-03-10", **extra: Any) -> dict[str, Any]:
    return {"reportType": report_type, "format": fmt, "startDate": start, "endDate": end,
            **extra}


async def stored(engine: Engine, result: dict[str, Any]) -> Report:
    report = await engine.store.report_get(result["reportId"])
    assert report is not None
    assert result["size"] == report.size == len(report.content)
    assert result["downloadUrl"] == f"/api/v1/queue/reports/{report.id}"
    return report


# --- analytics-track ---------------------------------------------------------------------------


async def test_concurrent_analytics_jobs_share_few_writes_and_every_event_is_kept(
        backend: Backend) -> None:
    store = backend.store()
    specs = [JobSpec(type="analytics-track", tenant_id="t1", data=track(
        "page_view", f"2025-03-10T10:{i // 60:02d}:{i % 60:02d}Z", venue=f"v{i % 3}",
        userId=f"u{i}", data={"i": i})) for i in range(200)]
    async with background_engine(store, backend.data_dir) as (engine, background):
        enqueued = await engine.enqueue_many(specs)
        results = await asyncio.gather(*(engine.result(e.job.id, timeout=10) for e in enqueued))
        assert results[0] == {"success": True,
                              "data": {"eventType": "page_view", "processedAt": NOW_ISO}}
        assert background.batcher.rows == 200
        if backend.name == "memory":
            kept = await store.events_query("t1", DAY0 - DAY, DAY0, limit=1000)
            assert len(kept) == 200

    print(f"{backend.name}: 200 events in {len(store.appends)} writes: {store.appends}")
    assert sum(store.appends) == 200
    assert len(store.appends) <= 20, store.appends
    if backend.name == "sqlite":
        again = SqliteStore(backend.path)
        await again.open(QUEUES, DAY0)
        try:
            kept = await again.events_query("t1", DAY0 - DAY, DAY0, limit=1000)
        finally:
            await again.close()
        assert sorted(e.id for e in kept) == sorted(e.job.id for e in enqueued)
        by_user = {e.user_id: e for e in kept}
        first = by_user["u7"]
        assert (first.event_type, first.venue_id, first.tenant_id, first.data,
                first.occurred_at, first.recorded_at) == (
            "page_view", "v1", "t1", {"i": 7},
            datetime(2025, 3, 10, 10, 0, 7, tzinfo=UTC).timestamp(), DAY0)


class GatedStore(MemoryStore):
    """A memory store whose event writes wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        self.entered.set()
        await self.release.wait()
        await super().events_append(events)


async def test_an_analytics_job_completes_only_after_its_event_is_written(tmp_path: Path
                                                                         ) -> None:
    store = GatedStore()
    async with background_engine(store, tmp_path) as (engine, _):
        job = await engine.enqueue("analytics-track", track("checkout", "2025-03-10T09:00:00Z"),
                                   tenant_id="t1")
        await asyncio.wait_for(store.entered.wait(), 5)
        await asyncio.sleep(0.05)
        during = await engine.get(job.id)
        assert during is not None and during.state is JobState.ACTIVE
        assert await store.events_query("t1", DAY0 - DAY, DAY0) == []

        store.release.set()
        assert (await engine.result(job.id, timeout=5))["success"] is True
        [kept] = await store.events_query("t1", DAY0 - DAY, DAY0)
        assert (kept.id, kept.event_type) == (job.id, "checkout")


class BrokenStore(MemoryStore):
    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_failed_batch_write_fails_every_job_in_it_as_retryable() -> None:
    store = BrokenStore()
    await store.open(QUEUES, DAY0)
    batcher = EventBatcher(store)
    events = [AnalyticsEvent(id=f"e{i}", tenant_id="t1", event_type="x", occurred_at=DAY0,
                             recorded_at=DAY0) for i in range(3)]

    outcomes = await asyncio.gather(*(batcher.append(e) for e in events),
                                    return_exceptions=True)

    assert all(isinstance(o, RetryableError) for o in outcomes), outcomes
    assert {o.code for o in outcomes if isinstance(o, RetryableError)} == {
        "analytics_write_failed"}
    assert "disk I/O error" in str(outcomes[0])
    assert (batcher.writes, batcher.rows) == (0, 0)
    await batcher.close()
    with pytest.raises(Exception, match="closed"):
        await batcher.append(events[0])


async def test_an_analytics_event_with_a_bad_timestamp_goes_to_the_dead_letter_queue(
        tmp_path: Path) -> None:
    async with background_engine(MemoryStore(), tmp_path) as (engine, _):
        code, message = await dead_letter(engine, "analytics-track",
                                          track("page_view", "last tuesday"))
    assert code == "invalid_date"
    assert "data.timestamp" in message


# --- generate-report ---------------------------------------------------------------------------


def _refuse_push(job: Job) -> None:
    raise PermanentError("device token rejected", code="bad_token")


async def test_jobs_report_counts_by_type_and_state_with_failure_reasons(backend: Backend
                                                                        ) -> None:
    clock = FakeClock(DAY0 - DAY)
    processors: dict[str, Callable[[Job], Any]] = {
        "send-email": lambda job: {"sent": True}, "send-push": _refuse_push}
    async with background_engine(backend.store(), backend.data_dir, clock=clock,
                                 processors=processors) as (engine, _):
        await engine.pause("money")
        await run_ok(engine, "send-email", {"to": "early@example.com", "template": "t"})
        clock.set(DAY0)
        for i in range(3):
            await run_ok(engine, "send-email", {"to": f"fan{i}@example.com", "template": "t"})
        for i in range(2):
            await dead_letter(engine, "send-push", {"userId": f"u{i}", "title": "Hi",
                                                    "body": "Doors open"})
        await engine.enqueue("payment-process", {
            "userId": "u1", "venueId": "v1", "eventId": "e1", "amount": 1000,
            "paymentMethod": "pm_card_visa"}, tenant_id="t1", user_id="u1")
        await run_ok(engine, "send-email", {"to": "other@example.com", "template": "t"},
                     tenant="t2")

        as_json = await run_ok(engine, "generate-report", report_data("jobs"))
        as_csv = await run_ok(engine, "generate-report", report_data("jobs", "csv"))
        one_venue = await run_ok(engine, "generate-report", report_data("jobs", venueId="v1"))

        expected_rows = [
            {"type": "generate-report", "state": "active", "failureCode": None,
             "failureReason": None, "count": 1},
            {"type": "payment-process", "state": "waiting", "failureCode": None,
             "failureReason": None, "count": 1},
            {"type": "send-email", "state": "completed", "failureCode": None,
             "failureReason": None, "count": 3},
            {"type": "send-push", "state": "failed", "failureCode": "bad_token",
             "failureReason": "device token rejected", "count": 2},
        ]
        report = await stored(engine, as_json)
        assert (report.tenant_id, report.user_id, report.format, report.content_type,
                report.report_type, report.period_start, report.period_end, report.created_at
                ) == ("t1", "u1", "json", "application/json", "jobs", DAY0 - 12 * 3600,
                      DAY0 + 12 * 3600, DAY0)
        assert orjson.loads(report.content) == {
            "reportType": "jobs", "tenantId": "t1", "venueId": None,
            "period": {"start": "2025-03-10T00:00:00.000Z", "end": "2025-03-11T00:00:00.000Z"},
            "generatedAt": NOW_ISO,
            "columns": ["type", "state", "failureCode", "failureReason", "count"],
            "rows": expected_rows,
            "totals": {"jobs": 7, "byState": {"active": 1, "completed": 3, "failed": 2,
                                              "waiting": 1}},
            "scanned": 7, "truncated": False, "rowLimit": 100_000}
        assert {k: as_json[k] for k in ("reportType", "format", "rows", "scanned",
                                        "truncated")} == {
            "reportType": "jobs", "format": "json", "rows": 4, "scanned": 7, "truncated": False}
        assert as_json["period"] == {"start": "2025-03-10T00:00:00.000Z",
                                     "end": "2025-03-11T00:00:00.000Z"}

        report = await stored(engine, as_csv)
        assert report.content_type == "text/csv; charset=utf-8"
        assert report.content.decode() == (
            "type,state,failureCode,failureReason,count\r\n"
            "generate-report,active,,,1\r\n"
            "payment-process,waiting,,,1\r\n"
            "send-email,completed,,,3\r\n"
            "send-push,failed,bad_token,device token rejected,2\r\n")

        report = await stored(engine, one_venue)
        assert report.venue_id == "v1"
        assert orjson.loads(report.content)["rows"] == expected_rows[:2]


async def _charge(job: Job) -> dict[str, Any]:
    d = job.data
    if d["eventId"] == "e-declined":
        raise PermanentError("Your card was declined.", code="card_declined")
    status = "requires_action" if d["eventId"] == "e-3ds" else "succeeded"
    return {"paymentIntentId": f"pi_{d['eventId']}",
            "chargeId": f"ch_{d['eventId']}" if status == "succeeded" else None,
            "amount": d["amount"], "currency": d["currency"].lower(), "status": status}


async def _refund(job: Job) -> dict[str, Any]:
    return {"refundId": "re_1", "amount": job.data["amount"], "currency": "usd",
            "status": "succeeded"}


def _payment(event: str, venue: str, amount: int, currency: str = "USD", user: str = "u1"
             ) -> dict[str, Any]:
    return {"userId": user, "venueId": venue, "eventId": event, "amount": amount,
            "currency": currency, "paymentMethod": "pm_card_visa"}


async def test_payments_report_lists_completed_money_with_provider_ids_and_totals(
        backend: Backend) -> None:
    clock = FakeClock(DAY0 - DAY)
    async with background_engine(backend.store(), backend.data_dir, clock=clock, processors={
            "payment-process": _charge, "refund-process": _refund}) as (engine, _):
        await run_ok(engine, "payment-process", _payment("e-yesterday", "v1", 777))
        clock.set(DAY0)
        p1 = await run(engine, "payment-process", _payment("e1", "v1", 1000))
        p2 = await run(engine, "payment-process", _payment("e2", "v2", 2500, "EUR", user="u2"),
                       user="u2")
        p3 = await run(engine, "payment-process", _payment("e-3ds", "v1", 3000))
        await dead_letter(engine, "payment-process", _payment("e-declined", "v1", 999))
        r1 = await run(engine, "refund-process", {"transactionId": "pi_e1", "amount": 400,
                                                  "userId": "u1", "venueId": "v1"})
        await run_ok(engine, "payment-process", _payment("e9", "v1", 5000), tenant="t2")

        as_json = await run_ok(engine, "generate-report", report_data("payments"))
        as_csv = await run_ok(engine, "generate-report", report_data("payments", "csv"))
        one_venue = await run_ok(engine, "generate-report",
                                 report_data("payments", venueId="v2"))

        def row(job: Job, kind: str, status: str, venue: str, user: str, amount: int,
                currency: str, **ids: str) -> dict[str, Any]:
            return {"jobId": job.id, "type": kind, "status": status, "createdAt": NOW_ISO,
                    "finishedAt": NOW_ISO, "venueId": venue, "userId": user, "amount": amount,
                    "currency": currency, "paymentIntentId": None, "chargeId": None,
                    "refundId": None, "transactionId": None, **ids}

        rows = [
            row(p1, "payment", "succeeded", "v1", "u1", 1000, "USD", paymentIntentId="pi_e1",
                chargeId="ch_e1"),
            row(p2, "payment", "succeeded", "v2", "u2", 2500, "EUR", paymentIntentId="pi_e2",
                chargeId="ch_e2"),
            row(p3, "payment", "requires_action", "v1", "u1", 3000, "USD",
                paymentIntentId="pi_e-3ds"),
            row(r1, "refund", "succeeded", "v1", "u1", 400, "USD", refundId="re_1",
                transactionId="pi_e1"),
        ]
        totals = {"byCurrency": {
            "EUR": {"payments": 1, "charged": 2500, "refunds": 0, "refunded": 0, "pending": 0,
                    "unknownAmount": 0, "net": 2500},
            "USD": {"payments": 1, "charged": 1000, "refunds": 1, "refunded": 400, "pending": 1,
                    "unknownAmount": 0, "net": 600}}}
        body = orjson.loads((await stored(engine, as_json)).content)
        assert body["rows"] == rows
        assert body["totals"] == totals
        assert (as_json["rows"], as_json["scanned"]) == (4, 4)

        header = ("jobId,type,status,createdAt,finishedAt,venueId,userId,amount,currency,"
                  "paymentIntentId,chargeId,refundId,transactionId\r\n")
        t = NOW_ISO
        assert (await stored(engine, as_csv)).content.decode() == (
            header
            + f"{p1.id},payment,succeeded,{t},{t},v1,u1,1000,USD,pi_e1,ch_e1,,\r\n"
            + f"{p2.id},payment,succeeded,{t},{t},v2,u2,2500,EUR,pi_e2,ch_e2,,\r\n"
            + f"{p3.id},payment,requires_action,{t},{t},v1,u1,3000,USD,pi_e-3ds,,,\r\n"
            + f"{r1.id},refund,succeeded,{t},{t},v1,u1,400,USD,,,re_1,pi_e1\r\n"
            + ",total-charged,,,,,,2500,EUR,,,,\r\n"
            + ",total-refunded,,,,,,0,EUR,,,,\r\n"
            + ",total-net,,,,,,2500,EUR,,,,\r\n"
            + ",total-charged,,,,,,1000,USD,,,,\r\n"
            + ",total-refunded,,,,,,400,USD,,,,\r\n"
            + ",total-net,,,,,,600,USD,,,,\r\n")

        body = orjson.loads((await stored(engine, one_venue)).content)
        assert body["rows"] == [rows[1]]
        assert list(body["totals"]["byCurrency"]) == ["EUR"]


async def test_analytics_report_counts_events_by_type(backend: Backend) -> None:
    async with background_engine(backend.store(), backend.data_dir) as (engine, _):
        for data, tenant in [
                (track("page_view", "2025-03-10T08:00:00Z"), "t1"),
                (track("page_view", "2025-03-10T09:00:00Z"), "t1"),
                (track("page_view", "2025-03-10T23:59:59Z", venue="v2"), "t1"),
                (track("checkout", "2025-03-10T10:00:00+02:00"), "t1"),
                (track("page_view", "2025-03-09T23:59:59Z"), "t1"),  # the day before
                (track("page_view", "2025-03-10T08:00:00Z"), "t2")]:
            await run_ok(engine, "analytics-track", data, tenant=tenant)

        as_json = await run_ok(engine, "generate-report", report_data("analytics"))
        as_csv = await run_ok(engine, "generate-report", report_data("analytics", "csv"))
        one_venue = await run_ok(engine, "generate-report",
                                 report_data("analytics", venueId="v1"))

        body = orjson.loads((await stored(engine, as_json)).content)
        assert (body["rows"], body["totals"]) == (
            [{"eventType": "page_view", "count": 3}, {"eventType": "checkout", "count": 1}],
            {"events": 4, "eventTypes": 2})
        assert (as_json["rows"], as_json["scanned"]) == (2, 4)
        assert (await stored(engine, as_csv)).content == (
            b"eventType,count\r\npage_view,3\r\ncheckout,1\r\n")
        body = orjson.loads((await stored(engine, one_venue)).content)
        assert body["rows"] == [{"eventType": "page_view", "count": 2},
                                {"eventType": "checkout", "count": 1}]


async def test_a_report_past_its_row_bound_is_cut_and_says_so(tmp_path: Path) -> None:
    async with background_engine(MemoryStore(), tmp_path, processors={
            "send-email": lambda job: {"sent": True}}) as (engine, background):
        background.reports.max_rows = 2
        for i in range(3):
            await run_ok(engine, "send-email", {"to": f"fan{i}@example.com", "template": "t"})

        result = await run_ok(engine, "generate-report", report_data("jobs"))

        assert (result["scanned"], result["truncated"]) == (2, True)
        assert "cut at its bound of 2 records" in result["note"]
        body = orjson.loads((await stored(engine, result)).content)
        assert (body["truncated"], body["rowLimit"], body["totals"]["jobs"]) == (True, 2, 2)

        # A venue filter that drops every job still stops after ten times the bound.
        for i in range(20):
            await run_ok(engine, "send-email", {"to": f"more{i}@example.com", "template": "t"})
        result = await run_ok(engine, "generate-report", report_data("jobs", venueId="v9"))
        assert (result["scanned"], result["rows"], result["truncated"]) == (0, 0, True)


@pytest.mark.parametrize(("data", "code", "words"), [
    (report_data("jobs", "pdf"), "unsupported_format", ("'pdf'", "csv", "json")),
    (report_data("sales"), "unknown_report_type", ("'sales'", "analytics, jobs, payments")),
    (report_data("jobs", start="2025-02-30"), "invalid_date", ("data.startDate",)),
    (report_data("jobs", end="31/03/2025"), "invalid_date", ("data.endDate",)),
    (report_data("jobs", start="2025-03-10", end="2025-03-09"), "invalid_date",
     ("data.endDate must be after data.startDate",)),
])
async def test_a_report_that_cannot_be_made_goes_to_the_dead_letter_queue(
        tmp_path: Path, data: dict[str, Any], code: str, words: tuple[str, ...]) -> None:
    store = MemoryStore()
    async with background_engine(store, tmp_path) as (engine, _):
        got_code, message = await dead_letter(engine, "generate-report", data)
        assert await store.report_list("t1") == []
    assert got_code == code
    for word in words:
        assert word in message


# --- cleanup-old-data --------------------------------------------------------------------------


async def _hang(job: Job) -> None:
    await asyncio.Event().wait()


async def test_cleanup_of_jobs_removes_old_finished_ones_and_never_live_ones(
        backend: Backend) -> None:
    clock = FakeClock(DAY0)
    async with background_engine(backend.store(), backend.data_dir, clock=clock, processors={
            "send-email": lambda job: {"sent": True}, "send-push": _refuse_push,
            "send-sms": _hang}) as (engine, _):
        await engine.pause("money")
        waiting = await engine.enqueue("payment-process", _payment("e1", "v1", 1000),
                                       tenant_id="t1")
        active = await engine.enqueue("send-sms", {"to": "+15550001111", "message": "hi"})
        old = [(await run(engine, "send-email", {"to": f"old{i}@example.com", "template": "t"}))
               for i in range(2)]
        old.append(await run(engine, "send-push", {"userId": "u1", "title": "t", "body": "b"}))
        clock.advance(35 * DAY)
        young = await run(engine, "send-email", {"to": "young@example.com", "template": "t"})
        clock.advance(5 * DAY)
        running = await engine.get(active.id)
        assert running is not None and running.state is JobState.ACTIVE

        # 45 days ago is before everything: retention alone would remove the old jobs now,
        # but never jobs younger than olderThan.
        kept = await run_ok(engine, "cleanup-old-data", {"dataType": "jobs", "olderThan": "45d"})
        assert kept == {"dataType": "jobs", "olderThan": "2025-03-05T12:00:00.000Z",
                        "removed": {"jobs": 0}, "total": 0}
        result = await run_ok(engine, "cleanup-old-data",
                              {"dataType": "jobs", "olderThan": "30d"})
        assert result["removed"] == {"jobs": 3}
        assert result["olderThan"] == "2025-03-20T12:00:00.000Z"
        assert [await engine.get(j.id) for j in old] == [None, None, None]
        left = {j.id: await engine.get(j.id) for j in (waiting, active, young)}
        assert [j.state if j else None for j in left.values()] == [
            JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]
        again = await run_ok(engine, "cleanup-old-data",
                             {"dataType": "jobs", "olderThan": "2025-04-01T00:00:00Z"})
        assert again["removed"] == {"jobs": 0}
        await engine.cancel(active.id)


async def test_cleanup_of_old_logs_removes_old_events_and_reports(backend: Backend) -> None:
    clock = FakeClock(DAY0)
    store = backend.store()
    async with background_engine(store, backend.data_dir, clock=clock) as (engine, _):
        for stamp in ("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z", "2025-04-18T00:00:00Z"):
            await run_ok(engine, "analytics-track", track("page_view", stamp))
        old_report = await run_ok(engine, "generate-report", report_data("analytics"))
        clock.advance(40 * DAY)
        young_report = await run_ok(engine, "generate-report", report_data("analytics"))

        result = await run_ok(engine, "cleanup-old-data",
                              {"dataType": "old_logs", "olderThan": "30d"})

        assert result == {"dataType": "old_logs", "olderThan": "2025-03-20T12:00:00.000Z",
                          "removed": {"analyticsEvents": 2, "reports": 1}, "total": 3}
        left = await store.events_query("t1", DAY0 - 30 * DAY, DAY0 + 60 * DAY)
        assert [e.occurred_at for e in left] == [
            datetime(2025, 4, 18, tzinfo=UTC).timestamp()]
        assert await store.report_get(old_report["reportId"]) is None
        assert await store.report_get(young_report["reportId"]) is not None


async def test_cleanup_of_temp_files_removes_only_old_tmp_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    now = DAY0
    for name, age in (("old.tmp", 31), ("fresh.tmp", 1), ("old.log", 31)):
        (folder / name).write_text(name)
        os.utime(folder / name, (now - age * DAY, now - age * DAY))
    (folder / "dir.tmp").mkdir()
    os.utime(folder / "dir.tmp", (now - 40 * DAY, now - 40 * DAY))
    (folder / "link.tmp").symlink_to(folder / "old.log")

    async with background_engine(MemoryStore(), folder) as (engine, _):
        result = await run_ok(engine, "cleanup-old-data",
                              {"dataType": "temp_files", "olderThan": "30d"})
        assert result["removed"] == {"tempFiles": 1}
        assert str(folder) in result["note"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "dir.tmp", "fresh.tmp", "link.tmp", "old.log"]
        assert (await run_ok(engine, "cleanup-old-data", {
            "dataType": "temp_files", "olderThan": "30d"}))["removed"] == {"tempFiles": 0}

    async with background_engine(MemoryStore(), tmp_path / "missing") as (engine, _):
        result = await run_ok(engine, "cleanup-old-data",
                              {"dataType": "temp_files", "olderThan": "1h"})
        assert result["removed"] == {"tempFiles": 0}


async def test_cleanup_of_what_tickq_does_not_keep_reports_zero_and_why(tmp_path: Path
                                                                        ) -> None:
    async with background_engine(MemoryStore(), tmp_path) as (engine, _):
        sessions = await run_ok(engine, "cleanup-old-data",
                                {"dataType": "sessions", "olderThan": "1d"})
        keys = await run_ok(engine, "cleanup-old-data",
                            {"dataType": "idempotency_keys", "olderThan": "12h"})
    assert (sessions["removed"], sessions["total"]) == ({"sessions": 0}, 0)
    assert "no sessions" in sessions["note"]
    assert keys["removed"] == {"idempotencyKeys": 0}
    assert "key_until" in keys["note"]


@pytest.mark.parametrize(("older_than", "words"), [
    ("last week", "30d or 12h"),
    ("0d", "above zero"),
    ("2099-01-01", "in the future"),
])
async def test_cleanup_with_a_bad_cutoff_goes_to_the_dead_letter_queue(
        tmp_path: Path, older_than: str, words: str) -> None:
    async with background_engine(MemoryStore(), tmp_path) as (engine, _):
        code, message = await dead_letter(engine, "cleanup-old-data",
                                          {"dataType": "jobs", "olderThan": older_than})
    assert code == "invalid_date"
    assert "data.olderThan" in message and words in message
