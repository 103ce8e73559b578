"""`memory://`: the scheduling index alone. Nothing survives the process; for tests, embedding
and the background tier."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from tickq.engine.gate import Gate
from tickq.engine.job import Job
from tickq.engine.outcome import Settle
from tickq.engine.queues import QueueConfig, QueueCounts
from tickq.engine.states import FINAL_STATES
from tickq.errors import IllegalTransitionError, StoreClosedError
from tickq.storage.base import (
    AlertRecord,
    AnalyticsEvent,
    FetchResult,
    InsertResult,
    JobQuery,
    NewAlert,
    OpenReport,
    PruneRule,
    QueueSnapshot,
    Report,
    ReportInfo,
    Schedule,
)
from tickq.storage.index import JobIndex
from tickq.storage.schedule_table import ScheduleTable

K = TypeVar("K")
V = TypeVar("V")


def _drop(rows: dict[K, V], old: Callable[[V], bool]) -> int:
    """Delete the rows that are `old`; returns how many went."""
    gone = [k for k, v in rows.items() if old(v)]
    for k in gone:
        del rows[k]
    return len(gone)


class MemoryStore:
    def __init__(self) -> None:
        self.on_available: Callable[[str], None] | None = None
        self._index: JobIndex | None = None
        self._paused: set[str] = set()
        self._events: dict[str, AnalyticsEvent] = {}
        self._reports: dict[str, Report] = {}
        self._alerts: dict[int, AlertRecord] = {}
        self._alert_seq = 0
        self._snapshots: list[QueueSnapshot] = []
        self._schedules = ScheduleTable()

    @property
    def index(self) -> JobIndex:
        if self._index is None:
            raise StoreClosedError("the store is not open")
        return self._index

    def _require_open(self) -> None:
        if self._index is None:
            raise StoreClosedError("the store is not open")

    async def open(self, queues: Mapping[str, QueueConfig], now: float) -> OpenReport:
        if self._index is None:
            self._index = JobIndex(queues)
        else:
            self._index.queues.update(queues)
        return OpenReport()

    async def close(self) -> None:
        self._index = None
        self._events.clear()
        self._reports.clear()
        self._alerts.clear()
        self._snapshots.clear()
        self._schedules.clear()

    async def ping(self) -> bool:
        return self._index is not None

    async def job_insert_many(self, jobs: Sequence[Job], now: float) -> list[InsertResult]:
        index = self.index
        found = index.insert_many(jobs, now)
        index.schedule_new(found, now)
        return [InsertResult(holder if isinstance(holder, Job) else index.get(holder), created)
                for holder, created in found]

    async def job_get(self, job_id: str) -> Job | None:
        job = self.index.jobs.get(job_id)
        return None if job is None else job.copy()

    async def job_fetch_available(self, queue: str, limit: int, now: float,
                                  lease_s: float, gate: Gate | None = None) -> FetchResult:
        return FetchResult(*self.index.fetch(queue, limit, now, lease_s, gate))

    async def job_unpark(self, key: str, n: int, now: float) -> int:
        return self.index.unpark(key, n, now)

    async def job_settle_many(self, settles: Sequence[Settle]) -> list[Job]:
        index = self.index
        done: list[Job] = []
        for s in settles:
            job = index.settle(s)
            if job is not None:
                done.append(job)
                index.drop_if_unkept(job)
        return done

    async def job_heartbeat(self, claims: Sequence[tuple[str, int]],
                            lease_until: float) -> list[str]:
        return self.index.heartbeat(claims, lease_until)

    async def job_rescue_stuck(self, now: float) -> list[Job]:
        return self.index.rescue_stuck(now)

    async def job_cancel(self, job_id: str, now: float) -> Job:
        index = self.index
        return index.cancel(index.get(job_id), now).copy()

    async def job_retry_failed(self, job_id: str, now: float, max_attempts: int) -> Job:
        index = self.index
        return index.retry_failed(index.get(job_id), now, max_attempts).copy()

    async def job_progress(self, job_id: str, token: int, progress: int) -> bool:
        return self.index.progress(job_id, token, progress)

    async def job_list(self, query: JobQuery) -> list[Job]:
        return [j.copy() for j in self.index.query(query)]

    async def job_discard(self, job_id: str) -> Job:
        index = self.index
        return index.discard(index.get(job_id)).copy()

    async def job_prune(self, rules: Sequence[PruneRule]) -> int:
        return len(self.index.prune(rules))

    async def job_update_result(self, job_id: str, result_json: bytes) -> Job:
        job = self.index.get(job_id)
        if job.state not in FINAL_STATES:
            raise IllegalTransitionError(
                f"job {job_id} is {job.state.value}; only a finished job's result can be "
                "replaced", job_id=job_id)
        job.result_json = result_json
        return job.copy()

    async def queue_counts(self, queue: str, now: float) -> QueueCounts:
        return self.index.counts(queue, now, queue in self._paused)

    async def queue_set_paused(self, queue: str, paused: bool) -> None:
        (self._paused.add if paused else self._paused.discard)(queue)

    async def queue_paused(self) -> set[str]:
        return set(self._paused)

    async def next_run_at(self, queue: str) -> float | None:
        return self.index.next_run_at(queue)

    async def queue_oldest_due(self, queue: str, now: float) -> float | None:
        return self.index.oldest_due(queue, now)

    # --- analytics events and reports -------------------------------------------------------

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        self._require_open()
        for event in events:
            self._events.setdefault(event.id, event)

    async def events_query(self, tenant_id: str | None, start: float, end: float,
                           event_type: str | None = None, *, venue_id: str | None = None,
                           limit: int = 1000) -> list[AnalyticsEvent]:
        self._require_open()
        found = [e for e in self._events.values()
                 if e.tenant_id == tenant_id and start <= e.occurred_at < end
                 and (event_type is None or e.event_type == event_type)
                 and (venue_id is None or e.venue_id == venue_id)]
        found.sort(key=lambda e: (e.occurred_at, e.id))
        return found[:limit]

    async def events_prune(self, before: float) -> int:
        self._require_open()
        return _drop(self._events, lambda e: e.occurred_at < before)

    async def report_put(self, report: Report) -> None:
        self._require_open()
        self._reports[report.id] = report

    async def report_get(self, report_id: str) -> Report | None:
        self._require_open()
        return self._reports.get(report_id)

    async def report_list(self, tenant_id: str | None, limit: int = 100) -> list[ReportInfo]:
        self._require_open()
        found = [r for r in self._reports.values() if r.tenant_id == tenant_id]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [r.info() for r in found[:limit]]

    async def report_prune(self, before: float) -> int:
        self._require_open()
        return _drop(self._reports, lambda r: r.created_at < before)

    # --- monitor: alerts and queue snapshots --------------------------------------------------

    async def alert_insert(self, alert: NewAlert) -> AlertRecord:
        self._require_open()
        self._alert_seq += 1
        record = alert.stored(self._alert_seq)
        self._alerts[record.id] = record
        return record

    async def alert_get(self, alert_id: int) -> AlertRecord | None:
        self._require_open()
        return self._alerts.get(alert_id)

    async def alert_list(self, severity: str | None = None, limit: int = 50, *,
                         since: float | None = None, queue: str | None = None,
                         alert_type: str | None = None,
                         acknowledged: bool | None = None) -> list[AlertRecord]:
        self._require_open()
        found = [a for a in self._alerts.values()
                 if (severity is None or a.severity == severity)
                 and (since is None or a.created_at >= since)
                 and (queue is None or a.queue_name == queue)
                 and (alert_type is None or a.alert_type == alert_type)
                 and (acknowledged is None or a.acknowledged == acknowledged)]
        found.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        return found[:limit]

    async def alert_set_channels(self, alert_id: int, channels: Mapping[str, str]) -> None:
        self._require_open()
        record = self._alerts.get(alert_id)
        if record is not None:
            self._alerts[alert_id] = dataclasses.replace(
                record, channels={**record.channels, **channels})

    async def alert_acknowledge(self, alert_id: int, by: str, at: float) -> AlertRecord | None:
        self._require_open()
        record = self._alerts.get(alert_id)
        if record is None or record.acknowledged:
            return record
        record = self._alerts[alert_id] = dataclasses.replace(
            record, acknowledged=True, acknowledged_by=by, acknowledged_at=at)
        return record

    async def alert_prune(self, before: float) -> int:
        self._require_open()
        return _drop(self._alerts, lambda a: a.created_at < before)

    async def snapshot_insert(self, snapshots: Sequence[QueueSnapshot]) -> None:
        self._require_open()
        self._snapshots.extend(snapshots)

    async def snapshot_list(self, queue: str | None, start: float, end: float,
                            limit: int = 10_000) -> list[QueueSnapshot]:
        self._require_open()
        found = [s for s in self._snapshots
                 if (queue is None or s.queue_name == queue) and start <= s.captured_at < end]
        found.sort(key=lambda s: s.captured_at)
        return found[:limit]

    async def snapshot_prune(self, before: float) -> int:
        self._require_open()
        kept = [s for s in self._snapshots if s.captured_at >= before]
        removed = len(self._snapshots) - len(kept)
        self._snapshots = kept
        return removed

    # --- idempotency keys and cron schedules --------------------------------------------------

    async def job_release_keys(self, now: float) -> int:
        return len(self.index.release_ended_holds(now))

    async def schedule_put(self, schedule: Schedule, *, replace: bool = False) -> bool:
        self._require_open()
        return self._schedules.put(schedule, replace=replace)

    async def schedule_get(self, name: str) -> Schedule | None:
        self._require_open()
        return self._schedules.get(name)

    async def schedule_list(self) -> list[Schedule]:
        self._require_open()
        return self._schedules.list()

    async def schedule_delete(self, name: str) -> bool:
        self._require_open()
        return self._schedules.delete(name)

    async def schedule_claim(self, name: str, version: int, *, last_slot: float,
                             pending: tuple[float, ...], at: float) -> Schedule | None:
        self._require_open()
        return self._schedules.claim(name, version, last_slot=last_slot, pending=pending, at=at)

    async def schedule_settle(self, name: str, pending: tuple[float, ...], *,
                              job_id: str | None, error: str | None) -> Schedule | None:
        self._require_open()
        return self._schedules.settle(name, pending, job_id=job_id, error=error)

    async def schedule_set_paused(self, name: str, paused: bool, *,
                                  at: float) -> Schedule | None:
        self._require_open()
        return self._schedules.set_paused(name, paused, at=at)
