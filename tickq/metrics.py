"""Prometheus metrics of one engine, on a registry of their own.

Counters and histograms are driven by the engine's events, so they count what happened since this
`Metrics` subscribed (never recomputed from the store). Gauges are read when scraped: queue depths
and the oldest waiting job's age come from the store, which is async, so the scrape handler
awaits `refresh()` before `generate()` (the Solana wallet balance is refreshed there too, with a
short timeout); provider buckets, breakers, memory and CPU are read synchronously during
collection. The journal's commit latency and batch size come from a hook the SQLite journal
calls after each commit (`attach_journal`, once the store is open).

Each `Metrics` owns its `CollectorRegistry` (never prometheus_client's global one), so two
applications in one process keep separate numbers.

Payments, refunds, NFTs, emails and webhooks are counted in `metrics_business`; per-minute
throughput for the JSON endpoints in `metrics_recent`; memory and CPU in `metrics_process`;
the wallet balance in `metrics_wallet`.
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tickq.engine.engine import Engine
from tickq.engine.events import Event, EventKind
from tickq.engine.queues import QueueCounts
from tickq.metrics_business import BusinessMetrics
from tickq.metrics_labels import Children, LabelGuard
from tickq.metrics_process import CpuMeter, memory_bytes
from tickq.metrics_recent import COMPLETED, FAILED, RETRIED, RecentActivity
from tickq.metrics_wallet import BalanceSource, CachedBalance
from tickq.storage.journal import Journal

log = logging.getLogger(__name__)

#: job_processing_duration_seconds buckets (seconds)
PROCESSING_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: queue_enqueue_to_start_seconds buckets (seconds)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: journal_commit_duration_seconds buckets (seconds): a NORMAL commit is well under a
#: millisecond, an fsynced one a few milliseconds on an SSD
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: journal_commit_batch_jobs buckets (jobs per commit)
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)
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

#: the runs whose duration queue_job_processing_duration_seconds observes
_FINISHED_RUNS = {EventKind.COMPLETED: COMPLETED, EventKind.FAILED: FAILED,
                  EventKind.RETRIED: RETRIED}


class Metrics:
    """The metrics of `engine`. Call `subscribe()` once to start counting its events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self.started = time.time()
        self._depths: dict[str, QueueCounts] = {}
        #: queue -> run_at of its longest-waiting due job (None: none due), as of `refresh`
        self._oldest_due: dict[str, float | None] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._journal: Journal | None = None
        self.wallet: CachedBalance | None = None
        self.cpu = CpuMeter()
        self.recent = RecentActivity()
        reg = self.registry
        self.job_results = Counter(
            "job_results_total", "Job results by outcome",
            ("queue_name", "job_type", "result"), registry=reg)
        self.processing = Histogram(
            "job_processing_duration_seconds", "Time taken to process jobs (start to completion)",
            ("queue_name", "job_type"), buckets=PROCESSING_BUCKETS, registry=reg)
        self.run_duration = Histogram(
            "queue_job_processing_duration_seconds",
            "Duration of every finished run (completed, retried or failed), by queue",
            ("queue",), buckets=PROCESSING_BUCKETS, registry=reg)
        self.processed = Counter(
            "queue_jobs_processed_total", "Jobs that finished processing (completed or failed)",
            registry=reg)
        self.failed = Counter(
            "queue_jobs_failed_total", "Jobs moved to the dead-letter queue, by reason",
            ("queue", "reason"), registry=reg)
        self.retries = Counter(
            "queue_job_retries_total", "Failed attempts that will be retried",
            ("queue", "job_type"), registry=reg)
        self.stalls = Counter(
            "queue_jobs_stalled_total",
            "Runs lost (lease expired or process died) and put back to waiting", ("queue",),
            registry=reg)
        self.enqueue_to_start = Histogram(
            "queue_enqueue_to_start_seconds",
            "Time from a job being due (created or run_at, whichever is later) to its start",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.deferrals = Counter(
            "queue_deferrals_total", "Jobs put off without spending an attempt, by reason",
            ("reason",), registry=reg)
        self.alerts = Counter(
            "alerts_sent_total", "Alerts sent, by severity, alert type and channel",
            ("severity", "type", "channel"), registry=reg)
        self.commit_latency = Histogram(
            "journal_commit_duration_seconds",
            "Time from handing a batch to the journal writer to its commit",
            buckets=COMMIT_BUCKETS, registry=reg)
        self.commit_batch = Histogram(
            "journal_commit_batch_jobs", "Jobs written per journal commit",
            buckets=BATCH_BUCKETS, registry=reg)
        self.business = BusinessMetrics(reg)
        # Children looked up once per label values: `labels()` is the costliest part of an event.
        self._results = Children(self.job_results)
        self._processing = Children(self.processing)
        self._runs = Children(self.run_duration)
        self._failed = Children(self.failed)
        self._retries = Children(self.retries)
        self._stalls = Children(self.stalls)
        self._deferrals = Children(self.deferrals)
        self._alert_labels = (LabelGuard(), LabelGuard(), LabelGuard())
        reg.register(_StateCollector(self))
        ProcessCollector(registry=reg)

    # --- events ---------------------------------------------------------------------------------

    def subscribe(self) -> Callable[[], None]:
        """Count the engine's events from now on; returns the function that stops counting.
        The journal's commits are watched too when the store is already open (otherwise call
        `attach_journal` once it is)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.events.subscribe(self.on_event, KINDS)
        self.attach_journal()
        return self.close

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._journal is not None and self._journal.on_commit == self._on_commit:
            self._journal.on_commit = None
        self._journal = None

    def on_event(self, event: Event) -> None:
        job, kind = event.job, event.kind
        result = RESULTS.get(kind)
        if result is not None:
            self._results(job.queue, job.type, result).inc()
        finished = _FINISHED_RUNS.get(kind)
        if finished is not None:
            ran = None if job.started_at is None else max(0.0, event.at - job.started_at)
            self.recent.add(job.queue, finished, event.at, ran)
            if ran is not None:
                self._runs(job.queue).observe(ran)
                if finished == COMPLETED:
                    self._processing(job.queue, job.type).observe(ran)
        if kind is EventKind.STARTED:
            if job.started_at is not None:
                due = max(job.created_at, job.run_at)
                self.enqueue_to_start.observe(max(0.0, job.started_at - due))
        elif kind is EventKind.COMPLETED:
            self.processed.inc()
            self.business.on_event(event)
        elif kind is EventKind.FAILED:
            self.processed.inc()
            self._failed(job.queue, event.reason or "unknown").inc()
            self.business.on_event(event)
        elif kind is EventKind.RETRIED:
            self._retries(job.queue, job.type).inc()
        elif kind is EventKind.STALLED:
            self._stalls(job.queue).inc()
        elif kind is EventKind.EXPIRED:
            self._failed(job.queue, event.reason or "expired").inc()
        elif kind is EventKind.DEFERRED:
            self._deferrals(event.reason or "unknown").inc()

    def alert_sent(self, severity: str, type: str, channel: str) -> None:
        """Count one alert sent through one channel (the monitor calls this per channel)."""
        sev, kind, chan = self._alert_labels
        self.alerts.labels(sev(severity), kind(type), chan(channel)).inc()

    # --- journal --------------------------------------------------------------------------------

    def attach_journal(self) -> bool:
        """Watch the SQLite journal's commits, if the store has an open one; True when it
        does. Stores without a journal (memory) have nothing to watch."""
        try:
            journal = getattr(self.engine.store, "journal", None)
        except Exception:  # a SQLite store that is not open yet
            return False
        if not isinstance(journal, Journal):
            return False
        if journal is not self._journal:
            journal.on_commit = self._on_commit
            self._journal = journal
        return True

    def _on_commit(self, latency_s: float, jobs: int) -> None:
        self.commit_latency.observe(latency_s)
        self.commit_batch.observe(jobs)

    # --- wallet ---------------------------------------------------------------------------------

    def watch_wallet(self, source: BalanceSource | None) -> None:
        """Read `solana_wallet_balance_sol` from `source` at scrape time (None: no gauge)."""
        self.wallet = CachedBalance(source) if source is not None else None

    # --- scrape ---------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read every queue's counts and oldest due job for the next collection (the store is
        async), and the wallet balance. A store that cannot answer leaves the queue gauges out
        rather than failing the whole scrape."""
        depths: dict[str, QueueCounts] = {}
        oldest: dict[str, float | None] = {}
        engine = self.engine
        try:
            now = engine.clock.now()
            for cfg in engine.registry.queues:
                depths[cfg.name] = await engine.counts(cfg.name)
                oldest[cfg.name] = await engine.store.queue_oldest_due(cfg.name, now)
        except Exception:
            log.warning("queue depths unavailable for this scrape", exc_info=True)
            depths, oldest = {}, {}
        self._depths, self._oldest_due = depths, oldest
        if self.wallet is not None:
            await self.wallet.refresh()

    def oldest_age(self, queue: str, now: float) -> float:
        """Seconds the queue's longest-waiting due job has waited (0 with none), as of the last
        `refresh`."""
        due = self._oldest_due.get(queue)
        return 0.0 if due is None else max(0.0, now - due)

    @property
    def depths(self) -> dict[str, QueueCounts]:
        """Every queue's counts as of the last `refresh`."""
        return self._depths

    async def generate(self) -> bytes:
        """The text exposition format, with fresh queue depths."""
        await self.refresh()
        return generate_latest(self.registry)

    async def aclose(self) -> None:
        """Stop counting and cancel a wallet read still in flight."""
        self.close()
        if self.wallet is not None:
            await self.wallet.close()


class _StateCollector(Collector):
    """Gauges read at scrape time: queue depths and ages (as of the last `refresh`), provider
    buckets, breakers, the journal's totals, the wallet, memory, CPU and uptime."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield from self._queues()
        yield from self._providers()
        journal = m._journal
        if journal is not None:
            yield CounterMetricFamily("journal_commits", "Journal commits since the store opened",
                                      value=float(journal.commits))
            yield CounterMetricFamily("journal_rows", "Job rows written by journal commits "
                                      "since the store opened", value=float(journal.rows))
        if m.wallet is not None and (balance := m.wallet.value) is not None:
            yield GaugeMetricFamily("solana_wallet_balance_sol",
                                    "SOL held by the payer wallet (read from the chain)",
                                    value=balance)
        memory = GaugeMetricFamily("service_memory_usage_bytes", "Memory used by this process",
                                   labels=("type",))
        for kind, size in memory_bytes().items():
            memory.add_metric((kind,), float(size))
        yield memory
        yield GaugeMetricFamily("service_cpu_usage_percent",
                                "CPU used by this process since the previous reading "
                                "(100 = one core)", value=m.cpu.read().percent)
        yield GaugeMetricFamily("service_uptime_seconds", "Seconds since the metrics started",
                                value=max(0.0, time.time() - m.started))

    def _queues(self) -> Iterator[Metric]:
        m = self._m
        now = m.engine.clock.now()
        depth = GaugeMetricFamily("queue_depth", "Number of jobs in queue",
                                  labels=("queue_name", "status"))
        failed = GaugeMetricFamily("failed_jobs_total", "Number of failed jobs",
                                   labels=("queue_name",))
        dlq = GaugeMetricFamily("queue_dlq_size", "Jobs in the dead-letter queue",
                                labels=("queue_name",))
        active = GaugeMetricFamily("queue_active_jobs", "Jobs running now", labels=("queue",))
        size = GaugeMetricFamily("queue_size", "Jobs waiting (delayed ones included)",
                                 labels=("queue",))
        oldest = GaugeMetricFamily("oldest_job_age_seconds",
                                   "Age of the oldest waiting job that is due (0: none)",
                                   labels=("queue_name",))
        for name, counts in sorted(m._depths.items()):
            for status in DEPTH_STATUSES:
                depth.add_metric((name, status), float(getattr(counts, status)))
            failed.add_metric((name,), float(counts.failed))
            dlq.add_metric((name,), float(counts.failed))
            active.add_metric((name,), float(counts.active))
            size.add_metric((name,), float(counts.waiting))
            oldest.add_metric((name,), m.oldest_age(name, now))
        yield from (depth, failed, dlq, active, size, oldest)

    def _providers(self) -> Iterator[Metric]:
        m = self._m
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
