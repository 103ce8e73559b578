"""The monitor's pure decisions: thresholds, cooldowns per severity, and their restoration."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickq.clock import FakeClock
from tickq.engine.monitor import (
    ALERT_RETENTION_S,
    COOLDOWN_S,
    SNAPSHOT_RETENTION_S,
    AlertType,
    Monitor,
    QueueSample,
    QueueThresholds,
    Severity,
    default_thresholds,
    evaluate,
    retention_cutoffs,
)

T0 = 1_800_000_000.0
MIN, HOUR, DAY = 60.0, 3600.0, 86_400.0


def sample(queue: str = "money", at: float = T0, *, due: int = 0, failed: int = 0,
           oldest_due_at: float | None = None) -> QueueSample:
    return QueueSample(queue=queue, at=at, due=due, delayed=0, active=0, completed=0,
                       failed=failed, oldest_due_at=oldest_due_at)


def test_default_thresholds_are_the_specs() -> None:
    t = default_thresholds()
    assert (t["money"].depth, t["money"].age_s, t["money"].failures,
            t["money"].severity) == (50, 10 * MIN, 10, Severity.CRITICAL)
    assert (t["communication"].depth, t["communication"].age_s, t["communication"].failures,
            t["communication"].severity) == (5000, 30 * MIN, 100, Severity.WARNING)
    assert (t["background"].depth, t["background"].age_s, t["background"].failures,
            t["background"].severity) == (50_000, 120 * MIN, 1000, Severity.INFO)
    assert COOLDOWN_S == {Severity.CRITICAL: 5 * MIN, Severity.WARNING: HOUR,
                          Severity.INFO: DAY}


def test_a_threshold_is_breached_only_when_exceeded() -> None:
    money = default_thresholds()["money"]
    assert evaluate(sample(due=50, failed=10, oldest_due_at=T0 - 10 * MIN), money) == []
    found = evaluate(sample(due=51, failed=11, oldest_due_at=T0 - 10 * MIN - 1), money)
    assert [(b.alert_type, b.value, b.threshold) for b in found] == [
        (AlertType.QUEUE_DEPTH, 51.0, 50.0), (AlertType.JOB_AGE, 10 * MIN + 1, 10 * MIN),
        (AlertType.HIGH_FAILURES, 11.0, 10.0)]
    assert all(b.severity is Severity.CRITICAL and b.queue == "money" for b in found)
    assert found[0].message == "CRITICAL: Money queue has 51 jobs waiting (threshold 50)"
    assert "10.0 minutes" in found[1].message
    assert "11 failed jobs" in found[2].message


def test_a_queue_with_nothing_due_has_no_age() -> None:
    assert sample(oldest_due_at=None).oldest_age_s is None
    assert sample(at=T0, oldest_due_at=T0 + 5).oldest_age_s == 0.0


@pytest.mark.parametrize(("queue", "severity", "window"), [
    ("money", Severity.CRITICAL, 5 * MIN),
    ("communication", Severity.WARNING, HOUR),
    ("background", Severity.INFO, DAY),
])
def test_a_lasting_breach_alerts_once_per_cooldown_window(queue: str, severity: Severity,
                                                          window: float) -> None:
    clock = FakeClock(T0)
    monitor = Monitor(clock)
    depth = default_thresholds()[queue].depth + 1

    def check() -> int:
        found = monitor.check([sample(queue, clock.now(), due=depth)])
        assert all(b.severity is severity for b in found)
        return len(found)

    assert check() == 1
    clock.advance(window - 1)
    assert check() == 0
    clock.advance(1)
    assert check() == 1
    clock.advance(30)
    assert check() == 0


def test_cooldowns_are_per_queue_and_alert_type() -> None:
    clock = FakeClock(T0)
    monitor = Monitor(clock)
    assert len(monitor.check([sample("money", T0, due=51)])) == 1
    clock.advance(30)
    # Same queue, another type: its own window. Another queue: its own window.
    found = monitor.check([sample("money", clock.now(), due=51, failed=11),
                           sample("communication", clock.now(), due=5001)])
    assert [(b.queue, b.alert_type) for b in found] == [
        ("money", AlertType.HIGH_FAILURES), ("communication", AlertType.QUEUE_DEPTH)]


def test_queues_without_thresholds_never_alert() -> None:
    monitor = Monitor(FakeClock(T0))
    assert monitor.check([sample("imports", due=10**9, failed=10**9)]) == []


def test_remembered_alerts_keep_their_cooldown() -> None:
    clock = FakeClock(T0)
    monitor = Monitor(clock)
    monitor.remember([("money", AlertType.QUEUE_DEPTH, T0 - 4 * MIN)])
    assert monitor.quiet_until("money", AlertType.QUEUE_DEPTH, Severity.CRITICAL) == T0 + MIN
    assert monitor.check([sample(due=51)]) == []
    clock.advance(MIN)
    assert len(monitor.check([sample(at=clock.now(), due=51)])) == 1


def test_custom_thresholds_and_cooldowns() -> None:
    clock = FakeClock(T0)
    limits = {"money": QueueThresholds(queue="money", severity=Severity.WARNING, depth=0,
                                       age_s=1, failures=0)}
    monitor = Monitor(clock, limits, {Severity.WARNING: 10.0})
    assert len(monitor.check([sample(due=1, failed=1, oldest_due_at=T0 - 2)])) == 3
    clock.advance(10)
    assert len(monitor.check([sample(at=clock.now(), due=1)])) == 1
    with pytest.raises(ValueError, match="age_s"):
        QueueThresholds(queue="x", severity=Severity.INFO, depth=1, age_s=0, failures=1)


def test_retention_cutoffs() -> None:
    assert retention_cutoffs(T0) == (T0 - 30 * DAY, T0 - 7 * DAY)
    assert (SNAPSHOT_RETENTION_S, ALERT_RETENTION_S) == (30 * DAY, 7 * DAY)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=60))
def test_alerts_of_a_lasting_breach_are_exactly_one_window_apart_or_more(
        steps: list[int]) -> None:
    """Whatever the check times: an alert at the first check, then at the first check at or
    after each window's end, never inside one."""
    clock = FakeClock(T0)
    monitor = Monitor(clock)
    window = COOLDOWN_S[Severity.CRITICAL]
    raised: list[float] = []
    last: float | None = None
    for step in [0, *steps]:
        clock.advance(step)
        now = clock.now()
        expected = last is None or now - last >= window
        found = monitor.check([sample(at=now, due=51)])
        assert len(found) == (1 if expected else 0)
        if found:
            raised.append(now)
            last = now
    assert all(b - a >= window for a, b in itertools.pairwise(raised))


def test_pending_breaches_start_no_cooldown_until_raised() -> None:
    clock = FakeClock(T0)
    monitor = Monitor(clock)
    [breach] = monitor.pending([sample(due=51)])
    assert len(monitor.pending([sample(due=51)])) == 1  # nothing recorded yet
    monitor.raised(breach)
    assert monitor.pending([sample(due=51)]) == []
