"""Prometheus metrics of one engine, on a registry of their own.

Counters and histograms are driven by the engine's events, so they count what happened since this
`Metrics` subscribed (never recomputed from the store). Gauges are read when scraped: queue depths
come from `engine.counts`, which is async, so the scrape handler awaits `refresh()` before
`generate()`; provider buckets and breakers are read synchronously during collection.

Each `Metrics` owns its `CollectorRegistry` (never prometheus_client's global one), so two
applications in one process keep separate numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tickq.engine.engine import Engine
from tickq.engine.events import Event, EventKind
from tickq.engine.queues import QueueCounts

log = logging.getLogger(__name__)

#: job_processing_duration_seconds buckets (seconds)
PROCESSING_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: queue_enqueue_to_start_seconds buckets (seconds)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the `status` label values of queue_depth, in QueueCounts field names
DEPTH_STATUSES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")
#: breaker state as a number: 0 closed, 1 half-open, 2 open
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

#: event kinds counted in job_results_total, with their `result` label
RESULTS: dict[EventKind, str] = {
    EventKind.COMPLETED: "completed", EventKind.FAILED: "failed",
    EventKind.RETRIED: "retried", EventKind.DEFERRED: "deferred",
    EventKind.CANCELLED: "cancelled", EventKind.EXPIRED: "expired",
    EventKind.STALLED: "stalled",
}

#: the events the metrics count; the rest (enqueues, progress) are never made for them
KINDS = frozenset({*RESULTS, EventKind.STARTED})


class Metrics:
    """The metrics of `engine`. Call `subscribe()` once to start counting its events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self.started = time.time()
        self._depths: dict[str, QueueCounts] = {}
        self._unsubscribe: Callable[[], None] | None = None
        reg = self.registry
        self.job_results = Counter(
            "job_results_total", "Job results by outcome",
            ("queue_name", "job_type", "result"), registry=reg)
        self.processing = Histogram(
            "job_processing_duration_seconds", "Time taken to process jobs (start to completion)",
            ("queue_name", "job_type"), buckets=PROCESSING_BUCKETS, registry=reg)
        self.processed = Counter(
            "queue_jobs_processed_total", "Jobs that finished processing (completed or failed)",
            registry=reg)
        self.failed = Counter(
            "queue_jobs_failed_total", "Jobs moved to the dead-letter queue, by reason",
            ("queue", "reason"), registry=reg)
        self.enqueue_to_start = Histogram(
            "queue_enqueue_to_start_seconds",
            "Time from a job being due (created or run_at, whichever is later) to its start",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.deferrals = Counter(
            "queue_deferrals_total", "Jobs put off without spending an attempt, by reason",
            ("reason",), registry=reg)
        reg.register(_StateCollector(self))
        ProcessCollector(registry=reg)

    # --- events ---------------------------------------------------------------------------------

    def subscribe(self) -> Callable[[], None]:
        """Count the engine's events from now on; returns the function that stops counting."""
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.events.subscribe(self.on_event, KINDS)
        return self.close

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_event(self, event: Event) -> None:
        job, kind = event.job, event.kind
        result = RESULTS.get(kind)
        if result is not None:
            self.job_results.labels(job.queue, job.type, result).inc()
        if kind is EventKind.STARTED:
            if job.started_at is not None:
                due = max(job.created_at, job.run_at)
                self.enqueue_to_start.observe(max(0.0, job.started_at - due))
        elif kind is EventKind.COMPLETED:
            self.processed.inc()
            if job.started_at is not None:
                self.processing.labels(job.queue, job.type).observe(
                    max(0.0, event.at - job.started_at))
        elif kind is EventKind.FAILED:
            self.processed.inc()
            self.failed.labels(job.queue, event.reason or "unknown").inc()
        elif kind is EventKind.EXPIRED:
            self.failed.labels(job.queue, event.reason or "expired").inc()
        elif kind is EventKind.DEFERRED:
            self.deferrals.labels(event.reason or "unknown").inc()

    # --- scrape ---------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read every queue's counts for the next collection (the store is async). A store that
        cannot answer leaves the depths out rather than failing the whole scrape."""
        depths: dict[str, QueueCounts] = {}
        try:
            for cfg in self.engine.registry.queues:
                depths[cfg.name] = await self.engine.counts(cfg.name)
        except Exception:
            log.warning("queue depths unavailable for this scrape", exc_info=True)
            depths = {}
        self._depths = depths

    async def generate(self) -> bytes:
        """The text exposition format, with fresh queue depths."""
        await self.refresh()
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges read at scrape time: queue depths (as of the last `refresh`), provider buckets,
    breakers and uptime."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self._m
        depth = GaugeMetricFamily("queue_depth", "Number of jobs in queue",
                                  labels=("queue_name", "status"))
        failed = GaugeMetricFamily("failed_jobs_total", "Number of failed jobs",
                                   labels=("queue_name",))
        for name, counts in sorted(m._depths.items()):
            for status in DEPTH_STATUSES:
                depth.add_metric((name, status), float(getattr(counts, status)))
            failed.add_metric((name,), float(counts.failed))
        yield depth
        yield failed

        now = m.engine.clock.now()
        tokens = GaugeMetricFamily("rate_limiter_tokens", "Tokens available per provider bucket",
                                   labels=("bucket",))
        in_flight = GaugeMetricFamily("rate_limiter_in_flight",
                                      "Jobs running per provider bucket", labels=("bucket",))
        cooldown = GaugeMetricFamily("rate_limiter_cooldown_seconds",
                                     "Cooldown left after a 429 per provider bucket",
                                     labels=("bucket",))
        for name, st in sorted(m.engine.providers.limiter.status_all(now).items()):
            if not st["unlimited"]:
                tokens.add_metric((name,), float(st["tokens"]))
            in_flight.add_metric((name,), float(st["in_flight"]))
            cooldown.add_metric((name,), float(st["cooldown_left_s"]))
        yield tokens
        yield in_flight
        yield cooldown

        breaker = GaugeMetricFamily("circuit_breaker_state",
                                    "Breaker state per provider (0 closed, 1 half-open, 2 open)",
                                    labels=("provider",))
        for name, bs in m.engine.providers.breakers.status(now).items():
            breaker.add_metric((name,), BREAKER_STATES.get(bs["state"], 2.0))
        yield breaker

        yield GaugeMetricFamily("service_uptime_seconds", "Seconds since the metrics started",
                                value=max(0.0, time.time() - m.started))
