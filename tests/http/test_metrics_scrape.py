"""The gauges and counters added to the Prometheus scrape: queue size, active jobs, oldest job
age and dead-letter size, retries, run durations, alerts, memory and CPU; the wallet gauge is
absent without Solana. Every scrape is parsed with prometheus-client's text parser."""

from __future__ import annotations

import asyncio
import os
import time

from httpkit import Api, auth, email, payment, serve_api
from prometheus_client.parser import text_string_to_metric_families

from tickq.clock import FakeClock
from tickq.engine.job import Job
from tickq.errors import RetryableError
from tickq.http.keys import METRICS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
T0 = 1_800_000_000.0


async def scrape(api: Api, path: str = "/metrics") -> Samples:
    resp = await api.client.get(path, headers=auth(role="monitoring"))
    assert resp.status == 200, await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(api: Api, name: str, expected: float, **labels: str) -> Samples:
    """Events follow the state change they report; scrape until the counter caught up."""
    deadline = time.monotonic() + 5
    while True:
        samples = await scrape(api)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.01)


async def test_queue_gauges_on_a_fake_clock() -> None:
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        await api.enqueue(payment(amount=1000))  # money is paused: these wait
        clock.advance(30)
        await api.enqueue(payment(amount=2000))
        await api.enqueue({**payment(amount=3000), "options": {"delay": 600_000}})
        push = await api.enqueue({"queue": "communication", "type": "send-push",
                                  "data": {"userId": "u1", "title": "t", "body": "b"}})
        await api.wait_state(push, "failed")
        clock.advance(12)
        s = await scrape(api, "/api/v1/queue/metrics/prometheus")

    assert value(s, "queue_size", queue="money") == 3  # the delayed one included
    assert value(s, "queue_depth", queue_name="money", status="delayed") == 1
    assert value(s, "oldest_job_age_seconds", queue_name="money") == 42  # the first, due at T0
    assert value(s, "oldest_job_age_seconds", queue_name="communication") == 0
    assert value(s, "queue_active_jobs", queue="money") == 0
    assert value(s, "queue_dlq_size", queue_name="communication") == 1
    assert value(s, "failed_jobs_total", queue_name="communication") == 1


async def test_run_durations_retries_and_alerts_are_counted(api: Api) -> None:
    calls: list[str] = []

    def flaky(job: Job) -> dict[str, bool]:
        calls.append(job.id)
        raise RetryableError("receiver busy")

    api.engine.register("webhook-deliver", flaky)
    done = [await api.enqueue(email(to=f"r{i}@example.com")) for i in range(2)]
    await api.enqueue({"queue": "communication", "type": "webhook-deliver",
                       "data": {"url": "https://hooks.example.com/x", "event": "order.paid"}})
    for job_id in done:
        await api.wait_state(job_id, "completed")
    assert api.client.app is not None
    metrics = api.client.app[METRICS]
    metrics.alert_sent("critical", "queue_depth", "sms")
    metrics.alert_sent("critical", "queue_depth", "sms")
    metrics.alert_sent("warning", "job_age", "email")

    s = await scrape_until(api, "queue_job_retries_total", 1, queue="communication",
                           job_type="webhook-deliver")

    assert len(calls) == 1  # the retry waits 5 s (the queue's backoff): not within this test
    assert value(s, "queue_job_retries_total", queue="communication",
                 job_type="webhook-deliver") == 1
    # Every finished run is timed: two completions and the failed attempt.
    assert value(s, "queue_job_processing_duration_seconds_count", queue="communication") == 3
    assert value(s, "job_processing_duration_seconds_count", queue_name="communication",
                 job_type="send-email") == 2
    assert value(s, "alerts_sent_total", severity="critical", type="queue_depth",
                 channel="sms") == 2
    assert value(s, "alerts_sent_total", severity="warning", type="job_age",
                 channel="email") == 1
    assert value(s, "queue_jobs_stalled_total", queue="communication") is None  # none stalled


async def test_memory_and_cpu_gauges_are_present_and_plausible(api: Api) -> None:
    s = await scrape(api)
    peak = value(s, "service_memory_usage_bytes", type="peak_rss")
    assert peak is not None and 10 * 2**20 < peak < 64 * 2**30
    rss = value(s, "service_memory_usage_bytes", type="rss")
    if rss is not None:  # Linux
        virtual = value(s, "service_memory_usage_bytes", type="virtual")
        assert virtual is not None and 10 * 2**20 < rss <= virtual
        resident = value(s, "process_resident_memory_bytes")
        assert resident is not None and abs(resident - rss) < 0.2 * rss  # the same process
    cpu = value(s, "service_cpu_usage_percent")
    assert cpu is not None and 0 <= cpu <= 100 * (os.cpu_count() or 1)
    uptime = value(s, "service_uptime_seconds")
    assert uptime is not None and uptime >= 0


async def test_no_wallet_gauge_without_solana(api: Api) -> None:
    assert api.client.app is not None and api.client.app[METRICS].wallet is None
    s = await scrape(api)
    assert not any(name == "solana_wallet_balance_sol" for name, _ in s)
    # and no journal figures with the memory store
    assert not any(name == "journal_commits_total" for name, _ in s)
