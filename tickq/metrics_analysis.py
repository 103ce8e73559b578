"""The numbers behind the JSON metrics endpoints that look back in time (spec seed-003
"Monitoring & Metrics Endpoints"): queue averages and alert counts over the last hour, failure
trends and the most frequent failures over the last day.

Queue averages and failure trends come from the queue snapshots the monitor stores at every
check (`Store.snapshot_list`, the spec's `queue_metrics`); alert counts from the alert history
(`Store.alert_list`); the most frequent failures from the dead-letter queue itself, grouped by
job type and by error code. Every read is bounded (`MAX_SNAPSHOTS` per queue, `MAX_ALERTS`,
`MAX_DLQ_SCAN`); an answer built from a cut-off read says so (`truncated`), so a dashboard never
shows a partial count as the whole.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.states import JobState
from tickq.storage.base import JobQuery

HOUR = 3600.0
#: snapshots read per request and page
SNAPSHOT_PAGE = 5_000
#: snapshots read per queue at most (a day at the spec's 30 s interval is 2,880)
MAX_SNAPSHOTS = 50_000
#: alerts counted at most
MAX_ALERTS = 10_000
#: dead-letter jobs scanned at most, newest first
MAX_DLQ_SCAN = 5_000
#: how severities are listed
SEVERITY_ORDER = ("critical", "warning", "info")


@dataclass(slots=True)
class QueueSummary:
    queue: str
    samples: int = 0
    waiting_sum: int = 0
    max_waiting: int = 0
    active_sum: int = 0
    failed_sum: int = 0

    def average(self, total: int) -> float:
        return round(total / self.samples, 2) if self.samples else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    queues: list[QueueSummary]
    #: (severity, alerts raised in the window)
    alerts: list[tuple[str, int]]
    truncated: bool


@dataclass(slots=True)
class FailureGroup:
    queue: str
    job_type: str
    error_code: str | None
    count: int = 0
    last_failure: float = 0.0


@dataclass(slots=True)
class HourTrend:
    queue: str
    #: start of the hour, epoch seconds
    hour: float
    samples: int = 0
    failed_sum: int = 0
    #: dead-letter jobs that failed in this hour (and are still there)
    failures: int = 0

    @property
    def avg_failures(self) -> float:
        return round(self.failed_sum / self.samples, 2) if self.samples else 0.0


@dataclass(slots=True)
class Failures:
    trends: list[HourTrend]
    by_type: list[FailureGroup]
    by_error: list[FailureGroup]
    scanned: int
    truncated: bool = False


async def _snapshots(engine: Engine, queue: str, start: float, end: float
                     ) -> tuple[list[tuple[float, int, int, int]], bool]:
    """(captured_at, waiting, active, failed) of `queue` in [start, end), oldest first, at
    most MAX_SNAPSHOTS; and whether that cut the read short."""
    out: list[tuple[float, int, int, int]] = []
    since = start
    while len(out) < MAX_SNAPSHOTS:
        page = await engine.store.snapshot_list(queue, since, end,
                                                min(SNAPSHOT_PAGE, MAX_SNAPSHOTS - len(out)))
        out.extend((s.captured_at, s.waiting_count, s.active_count, s.failed_count)
                    for s in page)
        if len(page) < SNAPSHOT_PAGE:
            return out, False
        since = math.nextafter(page[-1].captured_at, math.inf)
    return out, True


async def summary(engine: Engine, now: float, window_s: float = HOUR) -> Summary:
    """Per queue, the average and largest waiting count, and the average active and failed
    counts, over the snapshots of the last `window_s`; alerts raised in it, by severity."""
    start = now - window_s
    queues, truncated = [], False
    for cfg in engine.registry.queues:
        rows, cut = await _snapshots(engine, cfg.name, start, now + 1e-6)
        truncated |= cut
        if not rows:
            continue
        s = QueueSummary(cfg.name)
        for _, waiting, active, failed in rows:
            s.samples += 1
            s.waiting_sum += waiting
            s.max_waiting = max(s.max_waiting, waiting)
            s.active_sum += active
            s.failed_sum += failed
        queues.append(s)
    alerts = await engine.store.alert_list(None, MAX_ALERTS, since=start)
    truncated |= len(alerts) >= MAX_ALERTS
    counts = Counter(a.severity for a in alerts)
    ordered = [(sev, counts.pop(sev)) for sev in SEVERITY_ORDER if sev in counts]
    ordered += sorted(counts.items())
    return Summary(queues, ordered, truncated)


def error_code(job: Job) -> str:
    """The code of the job's last error (its type when it has no code)."""
    if not job.errors_json:
        return "unknown"
    try:
        history = orjson.loads(job.errors_json)
    except orjson.JSONDecodeError:
        return "unknown"
    last = history[-1] if isinstance(history, list) and history else {}
    if not isinstance(last, dict):
        return "unknown"
    code = last.get("code") or last.get("type")
    return str(code) if code else "unknown"


def group_failures(jobs: Iterable[Job]) -> tuple[list[FailureGroup], list[FailureGroup]]:
    """Dead-letter jobs grouped by (queue, type) and by (queue, type, error code), most
    frequent first (then the most recent, then by name)."""
    by_type: dict[tuple[str, str], FailureGroup] = {}
    by_error: dict[tuple[str, str, str], FailureGroup] = {}
    for job in jobs:
        at = job.finished_at or job.created_at
        code = error_code(job)
        for group in (by_type.setdefault((job.queue, job.type),
                                         FailureGroup(job.queue, job.type, None)),
                      by_error.setdefault((job.queue, job.type, code),
                                          FailureGroup(job.queue, job.type, code))):
            group.count += 1
            group.last_failure = max(group.last_failure, at)

    def order(g: FailureGroup) -> tuple[int, float, str, str, str]:
        return (-g.count, -g.last_failure, g.queue, g.job_type, g.error_code or "")

    return sorted(by_type.values(), key=order), sorted(by_error.values(), key=order)


async def failures(engine: Engine, now: float, hours: int = 24,
                   scan: int = MAX_DLQ_SCAN) -> Failures:
    """Failure trends per queue and hour over the last `hours` (average dead-letter size from
    the snapshots, and jobs that failed in each hour) and the failures of that time grouped by
    type and error code, from at most `scan` dead-letter jobs (the newest)."""
    start = now - hours * HOUR
    jobs = await engine.list_jobs(JobQuery(states=frozenset({JobState.FAILED}),
                                           finished_after=start, limit=scan))
    by_type, by_error = group_failures(jobs)
    result = Failures([], by_type, by_error, scanned=len(jobs), truncated=len(jobs) >= scan)
    trends: dict[tuple[str, int], HourTrend] = {}

    def trend(queue: str, at: float) -> HourTrend:
        hour = math.floor(at / HOUR)
        found = trends.get((queue, hour))
        if found is None:
            found = trends[(queue, hour)] = HourTrend(queue, hour * HOUR)
        return found

    for cfg in engine.registry.queues:
        rows, cut = await _snapshots(engine, cfg.name, start, now + 1e-6)
        result.truncated |= cut
        for captured_at, _, _, failed in rows:
            t = trend(cfg.name, captured_at)
            t.samples += 1
            t.failed_sum += failed
    for job in jobs:
        trend(job.queue, job.finished_at or job.created_at).failures += 1
    result.trends = sorted(trends.values(), key=lambda t: (-t.hour, t.queue))
    return result
