"""Jobs finished per queue and minute over the last hour, fed by engine events.

`GET /api/v1/queue/metrics/throughput` answers "how many jobs per minute did each queue get
through lately". Counting from events into one small bucket per (minute, queue) answers it
without touching the store and in bounded memory: at most `keep` minutes of buckets, one per
queue that finished something in that minute, each three integers. Minutes are counted on the
engine's clock, so tests drive them with a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MINUTE = 60.0
#: minutes kept (the spec's throughput covers the last hour)
KEEP_MINUTES = 60

COMPLETED, FAILED, RETRIED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class MinuteRow:
    queue: str
    #: start of the minute, epoch seconds
    minute: float
    completed: int
    failed: int
    retried: int


@dataclass(slots=True)
class QueueTotals:
    """Since the metrics started: finished runs and the time they took (completed ones)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    processing_s: float = 0.0
    timed: int = 0


class RecentActivity:
    def __init__(self, keep_minutes: int = KEEP_MINUTES) -> None:
        self.keep = keep_minutes
        #: (minute number, queue -> [completed, failed, retried]), oldest first
        self._minutes: deque[tuple[int, dict[str, list[int]]]] = deque()
        self.totals: dict[str, QueueTotals] = {}

    def add(self, queue: str, what: int, at: float, ran: float | None = None) -> None:
        """Count one finished run (COMPLETED, FAILED or RETRIED) of `queue` at time `at`; `ran`
        is how long it ran, when known (the average covers completed runs only)."""
        totals = self.totals.get(queue)
        if totals is None:
            totals = self.totals[queue] = QueueTotals()
        if what == COMPLETED:
            totals.completed += 1
            if ran is not None:
                totals.processing_s += ran
                totals.timed += 1
        elif what == FAILED:
            totals.failed += 1
        else:
            totals.retried += 1
        bucket = self._bucket(int(at // MINUTE))
        if bucket is not None:
            counts = bucket.get(queue)
            if counts is None:
                counts = bucket[queue] = [0, 0, 0]
            counts[what] += 1

    def _bucket(self, minute: int) -> dict[str, list[int]] | None:
        minutes = self._minutes
        if not minutes or minute > minutes[-1][0]:
            minutes.append((minute, {}))
            while minutes[0][0] <= minute - self.keep:
                minutes.popleft()
            return minutes[-1][1]
        # An event stamped a little earlier than the newest one (events of one settle batch,
        # or a clock step): find its minute from the newest end, if it is still kept.
        for i in range(len(minutes) - 1, -1, -1):
            number, bucket = minutes[i]
            if number == minute:
                return bucket
            if number < minute:
                minutes.insert(i + 1, (minute, {}))
                return minutes[i + 1][1]
        if minute > minutes[-1][0] - self.keep:
            minutes.appendleft((minute, {}))
            return minutes[0][1]
        return None

    def window(self, now: float, minutes: int, queues: list[str]) -> list[MinuteRow]:
        """One row per queue of `queues` and minute of the last `minutes` (the current,
        unfinished minute included), newest minute first, zeros where nothing finished."""
        current = int(now // MINUTE)
        kept = dict(self._minutes)
        rows = []
        for number in range(current, current - min(minutes, self.keep), -1):
            bucket = kept.get(number, {})
            for queue in queues:
                c = bucket.get(queue, (0, 0, 0))
                rows.append(MinuteRow(queue, number * MINUTE, c[0], c[1], c[2]))
        return rows

    def per_minute(self, queue: str, now: float, minutes: int) -> float:
        """Completed jobs of `queue` per minute over the last `minutes` whole minutes."""
        current = int(now // MINUTE)
        kept = dict(self._minutes)
        done = sum(kept.get(n, {}).get(queue, (0, 0, 0))[COMPLETED]
                   for n in range(current - minutes, current))
        return done / minutes
