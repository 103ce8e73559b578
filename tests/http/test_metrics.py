"""Prometheus metrics: event-driven counters, scrape-time gauges, access and registry isolation."""

from __future__ import annotations

import asyncio
import time

from httpkit import Api, auth, email, payment, serve_api
from prometheus_client.parser import text_string_to_metric_families

PROM = "/api/v1/queue/metrics/prometheus"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Api, path: str = "/metrics", **who: str) -> Samples:
    resp = await api.client.get(path, headers=auth(**who) if who else None)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(api: Api, name: str, expected: float, **labels: str) -> Samples:
    """Events follow the state change they report; wait for the counter to catch up."""
    deadline = time.monotonic() + 5
    while True:
        samples = await scrape(api)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.01)


async def test_counters_and_histograms_follow_events(api: Api) -> None:
    ok = [await api.enqueue(email(to=f"fan{i}@example.com")) for i in range(3)]
    bad = await api.enqueue({"queue": "communication", "type": "send-push",
                             "data": {"userId": "u1", "title": "t", "body": "b"}})
    for job_id in ok:
        await api.wait_state(job_id, "completed")
    await api.wait_state(bad, "failed")
    s = await scrape_until(api, "queue_jobs_processed_total", 4)

    q, t = "communication", "send-email"
    assert value(s, "job_results_total", queue_name=q, job_type=t, result="completed") == 3
    assert value(s, "job_results_total", queue_name=q, job_type="send-push",
                 result="failed") == 1
    assert value(s, "queue_jobs_processed_total") == 4
    failed = sum(v for (name, labels), v in s.items()
                 if name == "queue_jobs_failed_total" and ("queue", q) in labels)
    assert failed == 1
    assert value(s, "job_processing_duration_seconds_count", queue_name=q, job_type=t) == 3
    assert value(s, "job_processing_duration_seconds_bucket", queue_name=q, job_type=t,
                 le="60.0") == 3
    assert value(s, "job_processing_duration_seconds_bucket", queue_name=q, job_type=t,
                 le="+Inf") == 3
    assert value(s, "queue_enqueue_to_start_seconds_count") == 4
    assert value(s, "failed_jobs_total", queue_name=q) == 1
    assert value(s, "queue_depth", queue_name=q, status="completed") == 3
    assert value(s, "queue_depth", queue_name=q, status="failed") == 1
    assert value(s, "service_uptime_seconds") >= 0
    limits = api.engine.providers.limiter.status_all(api.engine.clock.now())
    assert limits and all(("rate_limiter_in_flight", frozenset({("bucket", b)})) in s
                          for b in limits)
    assert value(s, "process_cpu_seconds_total") > 0


async def test_queue_depth_reflects_counts(api: Api) -> None:
    for amount in (1000, 2000):
        await api.enqueue(payment(amount=amount))
    counts = await api.engine.counts("money")
    s = await scrape(api)
    name = next(dict(labels)["queue_name"] for (n, labels), _ in s.items()
                if n == "queue_depth" and dict(labels)["queue_name"].startswith("money"))
    assert counts.waiting == 2
    assert value(s, "queue_depth", queue_name=name, status="waiting") == 2
    assert value(s, "queue_depth", queue_name=name, status="active") == 0
    assert value(s, "job_results_total", queue_name=name, job_type="payment-process",
                 result="completed") == 0


async def test_prefixed_route_needs_admin_or_monitoring(api: Api) -> None:
    await scrape(api, PROM, role="monitoring")
    await scrape(api, PROM, role="admin")
    assert (await api.client.get(PROM, headers=auth(role="user"))).status == 403
    assert (await api.client.get(PROM)).status == 401
    assert (await api.client.get("/metrics")).status == 200  # the root scrape is public


async def test_two_apps_do_not_share_counters(api: Api) -> None:
    async with serve_api() as other:
        await api.wait_state(await api.enqueue(email()), "completed")
        s = await scrape_until(api, "queue_jobs_processed_total", 1)
        assert value(s, "queue_jobs_processed_total") == 1
        assert value(await scrape(other), "queue_jobs_processed_total") == 0
