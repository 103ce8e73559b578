"""The monitor's decisions: which queue measurements breach their thresholds, and which breaches
become alerts now (the rest are inside their cooldown).

Pure: measurements come in as `QueueSample`s, time from the injected clock, alerts go out as
`Breach` values; reading the store, storing alerts and sending them is the business of the
runner (`tickq.monitoring`). Thresholds and cooldowns are seed-003 "MONITORING CONFIGURATION":

| queue | depth | oldest job age | failed jobs | severity |
| --- | --- | --- | --- | --- |
| money | > 50 | > 10 min | > 10 | critical |
| communication | > 5000 | > 30 min | > 100 | warning |
| background | > 50000 | > 120 min | > 1000 | info |

Cooldowns are per (queue, alert type) and by severity: critical 5 minutes, warning 1 hour, info
24 hours. A breach that persists is therefore announced once per cooldown window, not at every
check; a breach of another type or queue has its own window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tickq.clock import Clock
from tickq.engine.queues import DAY, HOUR

MINUTE = 60.0


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class AlertType(StrEnum):
    #: too many jobs waiting to start
    QUEUE_DEPTH = "queue_depth"
    #: the longest-waiting due job has waited too long
    JOB_AGE = "job_age"
    #: too many jobs in the dead-letter queue
    HIGH_FAILURES = "high_failures"
    #: raised on an operator's request to check the channels
    TEST = "test"


#: how long after an alert another of the same (queue, type) stays quiet
COOLDOWN_S: Mapping[Severity, float] = {
    Severity.CRITICAL: 5 * MINUTE,
    Severity.WARNING: HOUR,
    Severity.INFO: DAY,
}

#: how long queue snapshots and alerts are kept (seed-003 "Metric Retention")
SNAPSHOT_RETENTION_S = 30 * DAY
ALERT_RETENTION_S = 7 * DAY


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueThresholds:
    """When a queue is in trouble. A value strictly above its threshold breaches it."""

    queue: str
    severity: Severity
    #: due waiting jobs (delayed ones are not a backlog)
    depth: int
    #: seconds the longest-waiting due job has waited since its run_at
    age_s: float
    #: jobs in the dead-letter queue
    failures: int

    def __post_init__(self) -> None:
        if self.depth < 0 or self.failures < 0 or self.age_s <= 0:
            raise ValueError(f"thresholds of {self.queue}: depth and failures must be >= 0 "
                             "and age_s > 0")


def default_thresholds() -> dict[str, QueueThresholds]:
    """seed-003's thresholds for the three built-in queues."""
    return {t.queue: t for t in (
        QueueThresholds(queue="money", severity=Severity.CRITICAL, depth=50,
                        age_s=10 * MINUTE, failures=10),
        QueueThresholds(queue="communication", severity=Severity.WARNING, depth=5000,
                        age_s=30 * MINUTE, failures=100),
        QueueThresholds(queue="background", severity=Severity.INFO, depth=50_000,
                        age_s=120 * MINUTE, failures=1000),
    )}


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSample:
    """One queue measured at `at`."""

    queue: str
    at: float
    #: waiting jobs that are due (run_at reached), parked ones included
    due: int
    delayed: int
    active: int
    completed: int
    failed: int
    #: run_at of the longest-waiting due job (None: nothing due is waiting)
    oldest_due_at: float | None = None

    @property
    def oldest_age_s(self) -> float | None:
        if self.oldest_due_at is None:
            return None
        return max(0.0, self.at - self.oldest_due_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class Breach:
    """A threshold crossed: what an alert is made from."""

    queue: str | None
    alert_type: AlertType
    severity: Severity
    value: float | None
    threshold: float | None
    message: str


def _name(queue: str) -> str:
    return queue[:1].upper() + queue[1:]


def _plural(n: float, one: str, many: str) -> str:
    return one if n == 1 else many


def evaluate(sample: QueueSample, limits: QueueThresholds) -> list[Breach]:
    """Every threshold of `limits` that `sample` is above, in a fixed order (depth, age,
    failures)."""
    sev = limits.severity
    head = {Severity.CRITICAL: "CRITICAL", Severity.WARNING: "WARNING",
            Severity.INFO: "INFO"}[sev]
    name = _name(sample.queue)
    found: list[Breach] = []
    if sample.due > limits.depth:
        found.append(Breach(
            queue=sample.queue, alert_type=AlertType.QUEUE_DEPTH, severity=sev,
            value=float(sample.due), threshold=float(limits.depth),
            message=f"{head}: {name} queue has {sample.due} "
                    f"{_plural(sample.due, 'job', 'jobs')} waiting (threshold {limits.depth})"))
    age = sample.oldest_age_s
    if age is not None and age > limits.age_s:
        found.append(Breach(
            queue=sample.queue, alert_type=AlertType.JOB_AGE, severity=sev, value=age,
            threshold=limits.age_s,
            message=f"{head}: {name} queue's oldest waiting job has waited "
                    f"{age / MINUTE:.1f} minutes (threshold {limits.age_s / MINUTE:g})"))
    if sample.failed > limits.failures:
        found.append(Breach(
            queue=sample.queue, alert_type=AlertType.HIGH_FAILURES, severity=sev,
            value=float(sample.failed), threshold=float(limits.failures),
            message=f"{head}: {name} queue has {sample.failed} failed "
                    f"{_plural(sample.failed, 'job', 'jobs')} in the dead-letter queue "
                    f"(threshold {limits.failures})"))
    return found


CooldownKey = tuple[str | None, AlertType]


class Monitor:
    """Thresholds per queue and the cooldown state; `check` turns samples into the alerts due
    now. Queues without thresholds are measured (and snapshotted by the runner) but never
    alert."""

    def __init__(self, clock: Clock, thresholds: Mapping[str, QueueThresholds] | None = None,
                 cooldowns: Mapping[Severity, float] | None = None) -> None:
        self.clock = clock
        self.thresholds = dict(default_thresholds() if thresholds is None else thresholds)
        self.cooldowns = dict(COOLDOWN_S if cooldowns is None else cooldowns)
        #: (queue, type) -> when its last alert was raised
        self._last: dict[CooldownKey, float] = {}

    def quiet_until(self, queue: str | None, alert_type: AlertType,
                    severity: Severity) -> float | None:
        """When the cooldown of (queue, type) ends, if one is running."""
        last = self._last.get((queue, alert_type))
        if last is None:
            return None
        until = last + self.cooldowns[severity]
        return until if until > self.clock.now() else None

    def due(self, breach: Breach) -> bool:
        """Whether `breach` should be raised now (no cooldown of its kind is running)."""
        return self.quiet_until(breach.queue, breach.alert_type, breach.severity) is None

    def raised(self, breach: Breach, at: float | None = None) -> None:
        """Start the cooldown of the breach's (queue, type) at `at` (default: now)."""
        when = self.clock.now() if at is None else at
        key = (breach.queue, breach.alert_type)
        if when > self._last.get(key, -1.0):
            self._last[key] = when

    def remember(self, raised: Iterable[tuple[str | None, AlertType, float]]) -> None:
        """Restore cooldowns from alerts raised earlier (by another process, or before a
        restart): (queue, type, created_at) each."""
        for queue, alert_type, at in raised:
            key = (queue, alert_type)
            if at > self._last.get(key, -1.0):
                self._last[key] = at

    def pending(self, samples: Iterable[QueueSample]) -> list[Breach]:
        """The breaches to raise now, cooldowns not started: the caller calls `raised` for each
        one it managed to raise, so an alert that could not be stored is tried again at the next
        check instead of being silenced for a whole window."""
        out: list[Breach] = []
        for sample in samples:
            limits = self.thresholds.get(sample.queue)
            if limits is None:
                continue
            out.extend(b for b in evaluate(sample, limits) if self.due(b))
        return out

    def check(self, samples: Iterable[QueueSample]) -> list[Breach]:
        """`pending`, with the cooldowns of the breaches returned started at once."""
        found = self.pending(samples)
        for breach in found:
            self.raised(breach)
        return found


def retention_cutoffs(now: float) -> tuple[float, float]:
    """(snapshots before, alerts before): what retention removes at `now`."""
    return now - SNAPSHOT_RETENTION_S, now - ALERT_RETENTION_S


__all__ = ["ALERT_RETENTION_S", "COOLDOWN_S", "SNAPSHOT_RETENTION_S", "AlertType", "Breach",
           "Monitor", "QueueSample", "QueueThresholds", "Severity", "default_thresholds",
           "evaluate", "retention_cutoffs"]
