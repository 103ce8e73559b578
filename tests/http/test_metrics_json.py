"""The JSON metrics endpoints: shapes and exact values on a fake clock, query validation,
roles and rate limits."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpkit import Api, auth, email, payment, serve_api

from tickq.clock import FakeClock, iso
from tickq.engine.job import Job
from tickq.errors import PermanentError
from tickq.http.alerts import MONITOR
from tickq.http.keys import METRICS
from tickq.metrics import Metrics
from tickq.storage.base import NewAlert, QueueSnapshot

T0 = 1_800_000_000.0  # a minute (and hour) boundary
PREFIX = "/api/v1/queue/metrics"
ROUTES = ("/metrics/json", "/metrics/queue-stats", "/metrics/system", f"{PREFIX}/summary",
          f"{PREFIX}/throughput", f"{PREFIX}/failures")


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[Api, FakeClock]]:
    """The app on a fake clock, without the monitor's own checks (each one stores snapshots,
    which would add to the ones these tests store)."""
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        assert api.client.app is not None
        await api.client.app[MONITOR].stop()
        yield api, clock


async def get(api: Api, path: str, role: str = "monitoring", status: int = 200) -> Any:
    resp = await api.client.get(path, headers=auth(role=role))
    assert resp.status == status, await resp.text()
    return await resp.json()


def metrics_of(api: Api) -> Metrics:
    assert api.client.app is not None
    return api.client.app[METRICS]


async def finished(api: Api, job_ids: list[str], state: str) -> None:
    for job_id in job_ids:
        await api.wait_state(job_id, state)


async def settle_events(api: Api, check: Any) -> None:
    """Events follow the state change they report; wait (bounded) for them to be counted."""
    deadline = time.monotonic() + 5
    while True:
        if check():
            return
        assert time.monotonic() < deadline, "the events were not counted within 5 s"
        await asyncio.sleep(0.01)


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
async def test_every_json_route_needs_admin_or_monitoring(api: Api, path: str) -> None:
    assert (await api.client.get(path)).status == 401
    for role in ("user", "venue_admin", "service"):
        assert (await api.client.get(path, headers=auth(role=role))).status == 403, role
    for role in ("admin", "monitoring"):
        assert (await api.client.get(path, headers=auth(role=role))).status == 200, role


async def test_json_routes_count_against_the_callers_request_budget() -> None:
    async with serve_api({"API_RATE_LIMIT_USER_PER_MIN": "2"}, rate_limit=True) as api:
        for _ in range(2):
            await get(api, f"{PREFIX}/summary")
        resp = await api.client.get("/metrics/system", headers=auth(role="monitoring"))
        assert resp.status == 429
        assert (await resp.json())["code"] == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1


# --- throughput -----------------------------------------------------------------------------


async def test_throughput_counts_completed_and_failed_jobs_per_queue_and_minute(
        clocked: tuple[Api, FakeClock]) -> None:
    api, clock = clocked
    clock.advance(5)
    first = [await api.enqueue(email(to=f"a{i}@example.com")) for i in range(3)]
    await finished(api, first, "completed")
    clock.advance(60)
    second = [await api.enqueue(email(to=f"b{i}@example.com")) for i in range(2)]
    push = await api.enqueue({"queue": "communication", "type": "send-push",
                              "data": {"userId": "u1", "title": "t", "body": "b"}})
    await finished(api, second, "completed")
    await api.wait_state(push, "failed")
    metrics = metrics_of(api)
    await settle_events(api, lambda: metrics.recent.totals["communication"].failed == 1)

    body = await get(api, f"{PREFIX}/throughput?minutes=3")

    assert body["minutes"] == 3 and body["timestamp"] == iso(T0 + 65)
    rows = [r for r in body["throughput"] if r["queue_name"] == "communication"]
    assert rows == [
        {"queue_name": "communication", "minute": iso(T0 + 60), "jobs_per_minute": 2,
         "failed": 1, "retried": 0},
        {"queue_name": "communication", "minute": iso(T0), "jobs_per_minute": 3, "failed": 0,
         "retried": 0},
        {"queue_name": "communication", "minute": iso(T0 - 60), "jobs_per_minute": 0,
         "failed": 0, "retried": 0}]
    assert {r["queue_name"] for r in body["throughput"]} == {"money", "communication",
                                                             "background"}
    assert len(body["throughput"]) == 9
    assert len((await get(api, f"{PREFIX}/throughput"))["throughput"]) == 3 * 60


@pytest.mark.parametrize("query", ["minutes=0", "minutes=61", "minutes=soon", "window=5"])
async def test_throughput_refuses_a_bad_query_naming_the_field(api: Api, query: str) -> None:
    body = await get(api, f"{PREFIX}/throughput?{query}", status=400)
    assert body["details"][0]["field"] == query.split("=")[0]


# --- summary --------------------------------------------------------------------------------


def snapshot(queue: str, at: float, waiting: int, active: int, failed: int) -> QueueSnapshot:
    return QueueSnapshot(queue_name=queue, waiting_count=waiting, delayed_count=0,
                         active_count=active, completed_count=0, failed_count=failed,
                         captured_at=at)


def alert(severity: str, at: float) -> NewAlert:
    return NewAlert(severity=severity, alert_type="queue_depth", message="deep",
                    queue_name="money", metric_value=75, threshold_value=50, created_at=at)


async def test_summary_averages_the_last_hour_of_snapshots_and_counts_its_alerts(
        clocked: tuple[Api, FakeClock]) -> None:
    api, clock = clocked
    clock.advance(5 * 3600)  # far past any check the monitor made at start
    now = clock.now()
    store = api.engine.store
    await store.snapshot_insert([
        snapshot("money", now - 3700, 500, 50, 50),  # older than an hour: left out
        snapshot("money", now - 3000, 4, 1, 0), snapshot("money", now - 1500, 12, 3, 1),
        snapshot("money", now - 30, 2, 2, 1),
        snapshot("communication", now - 60, 7, 0, 3)])
    for severity, at in (("critical", now - 100), ("warning", now - 200),
                         ("critical", now - 300), ("info", now - 5000)):
        await store.alert_insert(alert(severity, at))

    body = await get(api, f"{PREFIX}/summary")

    assert body == {
        "queues": [
            {"queue_name": "money", "avg_waiting": 6.0, "max_waiting": 12, "avg_active": 2.0,
             "avg_failed": 0.67, "samples": 3},
            {"queue_name": "communication", "avg_waiting": 7.0, "max_waiting": 7,
             "avg_active": 0.0, "avg_failed": 3.0, "samples": 1}],
        "alerts": [{"severity": "critical", "count": 2}, {"severity": "warning", "count": 1}],
        "windowMinutes": 60, "truncated": False, "timestamp": iso(now)}


# --- failures -------------------------------------------------------------------------------


def _refuse_hook(job: Job) -> None:
    code = "http_410" if job.data["event"] == "gone" else "http_400"
    raise PermanentError(f"receiver answered {code}", code=code)


def hook(event: str) -> dict[str, Any]:
    return {"queue": "communication", "type": "webhook-deliver",
            "data": {"url": "https://hooks.example.com/in", "event": event}}


async def test_failures_group_the_dead_letter_queue_by_type_and_error_code(
        clocked: tuple[Api, FakeClock]) -> None:
    api, clock = clocked
    api.engine.register("webhook-deliver", _refuse_hook)
    clock.advance(3 * 3600)
    start = clock.now()
    gone = [await api.enqueue(hook("gone")) for _ in range(3)]
    await finished(api, gone, "failed")
    clock.advance(3601)
    bad = [await api.enqueue(hook("bad"))]
    push = [await api.enqueue({"queue": "communication", "type": "send-push",
                               "data": {"userId": "u1", "title": "t", "body": "b"}})]
    await finished(api, bad + push, "failed")
    await api.engine.store.snapshot_insert([
        snapshot("communication", start + 10, 0, 0, 3),
        snapshot("communication", start + 20, 0, 0, 5),
        snapshot("communication", start + 3600, 0, 0, 4)])
    now = clock.now()

    body = await get(api, f"{PREFIX}/failures?hours=2")

    assert body["topFailures"] == [
        {"queue_name": "communication", "job_type": "webhook-deliver", "count": 4,
         "last_failure": iso(start + 3601)},
        {"queue_name": "communication", "job_type": "send-push", "count": 1,
         "last_failure": iso(start + 3601)}]
    assert body["byError"] == [
        {"queue_name": "communication", "job_type": "webhook-deliver", "error_code": "http_410",
         "count": 3, "last_failure": iso(start)},
        {"queue_name": "communication", "job_type": "send-push",
         "error_code": "PermanentError", "count": 1, "last_failure": iso(start + 3601)},
        {"queue_name": "communication", "job_type": "webhook-deliver", "error_code": "http_400",
         "count": 1, "last_failure": iso(start + 3601)}]
    assert body["trends"] == [
        {"queue_name": "communication", "hour": iso(start + 3600), "avg_failures": 4.0,
         "failures": 2, "samples": 1},
        {"queue_name": "communication", "hour": iso(start), "avg_failures": 4.0,
         "failures": 3, "samples": 2}]
    assert (body["hours"], body["scanned"], body["truncated"]) == (2, 5, False)
    assert body["timestamp"] == iso(now)
    one = await get(api, f"{PREFIX}/failures?hours=2&limit=1")
    assert len(one["topFailures"]) == len(one["byError"]) == 1
    # An hour back only sees the last hour's failures.
    recent = await get(api, f"{PREFIX}/failures?hours=1")
    assert [(g["job_type"], g["count"]) for g in recent["topFailures"]] == [
        ("send-push", 1), ("webhook-deliver", 1)]


@pytest.mark.parametrize("query", ["hours=0", "hours=25", "limit=0", "limit=101", "since=1"])
async def test_failures_refuse_a_bad_query_naming_the_field(api: Api, query: str) -> None:
    body = await get(api, f"{PREFIX}/failures?{query}", status=400)
    assert body["details"][0]["field"] == query.split("=")[0]


# --- root endpoints -------------------------------------------------------------------------


async def test_queue_stats_show_counts_oldest_job_and_what_finished(
        clocked: tuple[Api, FakeClock]) -> None:
    api, clock = clocked
    waiting = await api.enqueue(payment(amount=1200))  # money is paused: it waits
    clock.advance(42)
    done = [await api.enqueue(email(to=f"s{i}@example.com")) for i in range(2)]
    await finished(api, done, "completed")
    metrics = metrics_of(api)
    await settle_events(api, lambda: metrics.recent.totals["communication"].completed == 2)
    clock.advance(60)

    body = await get(api, "/metrics/queue-stats")

    stats = {q["name"]: q for q in body["queues"]}
    money, comm = stats["money"], stats["communication"]
    assert (money["waiting"], money["paused"], money["oldestJobAgeSeconds"]) == (1, True, 102.0)
    assert money["sinceStart"] == {"completed": 0, "failed": 0, "retried": 0,
                                   "avgProcessingSeconds": None}
    assert (comm["completed"], comm["waiting"], comm["oldestJobAgeSeconds"]) == (2, 0, 0.0)
    assert comm["sinceStart"]["completed"] == 2
    assert comm["sinceStart"]["avgProcessingSeconds"] == 0.0  # the fake clock stood still
    assert comm["completedPerMinute"] == 0.4  # 2 in the last 5 whole minutes
    assert body["throughputWindowMinutes"] == 5 and body["timestamp"] == iso(T0 + 102)
    assert waiting


async def test_system_reports_this_processes_memory_and_cpu(api: Api) -> None:
    body = await get(api, "/metrics/system")
    assert body["process"]["pid"] == os.getpid()
    assert body["memory"]["peak_rss"] > 10 * 2**20
    if "rss" in body["memory"]:
        assert 10 * 2**20 < body["memory"]["rss"] <= body["memory"]["virtual"]
    cpu = body["cpu"]
    assert 0 <= cpu["percent"] <= 100 * (os.cpu_count() or 1)
    assert cpu["userSeconds"] > 0 and cpu["systemSeconds"] >= 0
    assert body["uptimeSeconds"] >= 0


async def test_metrics_json_lists_every_family_with_its_samples(api: Api) -> None:
    job_id = await api.enqueue(email())
    await api.wait_state(job_id, "completed")
    metrics = metrics_of(api)
    await settle_events(api, lambda: metrics.recent.totals.get("communication") is not None)

    body = await get(api, "/metrics/json", role="admin")

    families = {f["name"]: f for f in body["metrics"]}
    results = families["job_results"]
    assert results["type"] == "counter" and results["help"] == "Job results by outcome"
    assert {"labels": {"queue_name": "communication", "job_type": "send-email",
                       "result": "completed"}, "value": 1.0,
            "metricName": "job_results_total"} in results["values"]
    buckets = [v for v in families["job_processing_duration_seconds"]["values"]
               if v.get("metricName") == "job_processing_duration_seconds_bucket"]
    assert {v["labels"]["le"] for v in buckets} >= {"0.1", "60.0", "+Inf"}
    assert families["queue_depth"]["type"] == "gauge"
    memory = {v["labels"]["type"]: v["value"]
              for v in families["service_memory_usage_bytes"]["values"]}
    assert memory["peak_rss"] > 0
    assert families["payment_amount_total_cents"]["type"] == "unknown"
    assert body["timestamp"].endswith("Z")

