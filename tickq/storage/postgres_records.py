"""The PostgreSQL store's tables besides jobs: analytics events, reports, alerts, queue
snapshots and cron schedules.

Written as durably as the communication tier (the pool that does not wait for the WAL flush:
they survive any tickq process, as the SQLite journal's group commit makes them do), read
through the synchronous pool. Every node reads and writes the same rows; the one compare-and-set
(`schedule_claim`) is a single conditional UPDATE, so of two nodes claiming one slot exactly one
succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from tickq.errors import StoreClosedError
from tickq.storage.base import (
    AlertRecord,
    AnalyticsEvent,
    NewAlert,
    QueueSnapshot,
    Report,
    ReportInfo,
    Schedule,
)
from tickq.storage.record_rows import (
    ALERT_COLUMNS,
    EVENT_COLUMNS,
    REPORT_COLUMNS,
    SCHEDULE_COLUMNS,
    SNAPSHOT_COLUMNS,
    alert_from_row,
    event_from_row,
    report_fields,
    snapshot_from_row,
    snapshot_row,
)


def _schedule(r: Sequence[Any]) -> Schedule:
    return Schedule(name=r[0], cron=r[1], timezone=r[2], template_json=bytes(r[3]),
                    missed=r[4], tenant_id=r[5], user_id=r[6], created_at=r[7], last_slot=r[8],
                    pending=tuple(r[9]), pending_at=r[10], version=int(r[11]),
                    last_job_id=r[12], last_error=r[13], paused=bool(r[14]))


def _count(status: str) -> int:
    """Rows a DELETE or UPDATE touched, from its status ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresRecords:
    _pool_sync: asyncpg.Pool | None
    _pool_lazy: asyncpg.Pool | None

    def _read(self) -> asyncpg.Pool:
        if self._pool_sync is None:
            raise StoreClosedError("the store is not open")
        return self._pool_sync

    def _write(self) -> asyncpg.Pool:
        if self._pool_lazy is None:
            raise StoreClosedError("the store is not open")
        return self._pool_lazy

    # --- analytics events and reports -------------------------------------------------------

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        if not events:
            return
        cols: list[list[Any]] = [[] for _ in range(9)]
        for e in events:
            for col, value in zip(cols, (e.id, e.tenant_id, e.event_type, e.venue_id, e.user_id,
                                         e.event_id, e.data_json, e.occurred_at, e.recorded_at),
                                  strict=True):
                col.append(value)
        await self._write().execute(
            f"INSERT INTO analytics_events ({EVENT_COLUMNS}) SELECT * FROM unnest("
            "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
            "$7::bytea[], $8::float8[], $9::float8[]) ON CONFLICT (id) DO NOTHING", *cols)

    async def events_query(self, tenant_id: str | None, start: float, end: float,
                           event_type: str | None = None, *, venue_id: str | None = None,
                           limit: int = 1000) -> list[AnalyticsEvent]:
        sql = (f"SELECT {EVENT_COLUMNS} FROM analytics_events "
               "WHERE tenant_id IS NOT DISTINCT FROM $1 AND occurred_at >= $2 "
               "AND occurred_at < $3")
        params: list[Any] = [tenant_id, start, end]
        if event_type is not None:
            params.append(event_type)
            sql += f" AND event_type = ${len(params)}"
        if venue_id is not None:
            params.append(venue_id)
            sql += f" AND venue_id = ${len(params)}"
        params.append(limit)
        sql += f" ORDER BY occurred_at, id LIMIT ${len(params)}"
        return [event_from_row(r) for r in await self._read().fetch(sql, *params)]

    async def events_prune(self, before: float) -> int:
        return _count(await self._write().execute(
            "DELETE FROM analytics_events WHERE occurred_at < $1", before))

    async def report_put(self, report: Report) -> None:
        await self._write().execute(
            f"INSERT INTO reports ({REPORT_COLUMNS}, content) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, "
            "user_id = excluded.user_id, venue_id = excluded.venue_id, "
            "report_type = excluded.report_type, format = excluded.format, "
            "period_start = excluded.period_start, period_end = excluded.period_end, "
            "created_at = excluded.created_at, content_type = excluded.content_type, "
            "size = excluded.size, job_id = excluded.job_id, content = excluded.content",
            report.id, report.tenant_id, report.user_id, report.venue_id, report.report_type,
            report.format, report.period_start, report.period_end, report.created_at,
            report.content_type, report.size, report.job_id, report.content)

    async def report_get(self, report_id: str) -> Report | None:
        r = await self._read().fetchrow(
            f"SELECT {REPORT_COLUMNS}, content FROM reports WHERE id = $1", report_id)
        return None if r is None else Report(**report_fields(r), content=bytes(r[12]))

    async def report_list(self, tenant_id: str | None, limit: int = 100) -> list[ReportInfo]:
        rows = await self._read().fetch(
            f"SELECT {REPORT_COLUMNS} FROM reports WHERE tenant_id IS NOT DISTINCT FROM $1 "
            "ORDER BY created_at DESC, id DESC LIMIT $2", tenant_id, limit)
        return [ReportInfo(**report_fields(r)) for r in rows]

    async def report_prune(self, before: float) -> int:
        return _count(await self._write().execute(
            "DELETE FROM reports WHERE created_at < $1", before))

    # --- the audit trail --------------------------------------------------------------------

    async def audit_append(self, entry: Mapping[str, Any], at: float) -> None:
        """Keep one operator action in the shared trail."""
        await self._write().execute(
            "INSERT INTO audit_log (at, action, entry) VALUES ($1, $2, $3::jsonb)",
            at, str(entry.get("action", "")), orjson.dumps(entry).decode())

    async def audit_recent(self, limit: int, action: str | None = None) -> list[dict[str, Any]]:
        """The latest entries, newest first, of every node."""
        rows = await self._read().fetch(
            "SELECT entry FROM audit_log WHERE $2::text IS NULL OR action = $2 "
            "ORDER BY seq DESC LIMIT $1", limit, action)
        return [orjson.loads(r[0]) for r in rows]

    # --- monitor: alerts and queue snapshots --------------------------------------------------

    async def alert_insert(self, alert: NewAlert) -> AlertRecord:
        r = await self._write().fetchrow(
            "INSERT INTO alert_history (severity, alert_type, message, queue_name, "
            "metric_value, threshold_value, channels, created_at) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING {ALERT_COLUMNS}",
            alert.severity, alert.alert_type, alert.message, alert.queue_name,
            alert.metric_value, alert.threshold_value,
            orjson.dumps(dict(alert.channels)).decode(), alert.created_at)
        assert r is not None
        return alert_from_row(r)

    async def alert_get(self, alert_id: int) -> AlertRecord | None:
        r = await self._read().fetchrow(
            f"SELECT {ALERT_COLUMNS} FROM alert_history WHERE id = $1", alert_id)
        return None if r is None else alert_from_row(r)

    async def alert_list(self, severity: str | None = None, limit: int = 50, *,
                         since: float | None = None, queue: str | None = None,
                         alert_type: str | None = None,
                         acknowledged: bool | None = None) -> list[AlertRecord]:
        clauses = ["true"]
        params: list[Any] = []
        for column, op, value in (("severity", "=", severity), ("created_at", ">=", since),
                                  ("queue_name", "=", queue), ("alert_type", "=", alert_type),
                                  ("acknowledged", "=", acknowledged)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} {op} ${len(params)}")
        params.append(limit)
        rows = await self._read().fetch(
            f"SELECT {ALERT_COLUMNS} FROM alert_history WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}", *params)
        return [alert_from_row(r) for r in rows]

    async def alert_set_channels(self, alert_id: int, channels: Mapping[str, str]) -> None:
        await self._write().execute(
            "UPDATE alert_history SET channels = channels || $2::jsonb WHERE id = $1",
            alert_id, orjson.dumps(dict(channels)).decode())

    async def alert_acknowledge(self, alert_id: int, by: str, at: float) -> AlertRecord | None:
        r = await self._write().fetchrow(
            "UPDATE alert_history SET acknowledged = true, acknowledged_by = $2, "
            "acknowledged_at = $3 WHERE id = $1 AND NOT acknowledged "
            f"RETURNING {ALERT_COLUMNS}", alert_id, by, at)
        return alert_from_row(r) if r is not None else await self.alert_get(alert_id)

    async def alert_prune(self, before: float) -> int:
        return _count(await self._write().execute(
            "DELETE FROM alert_history WHERE created_at < $1", before))

    async def snapshot_insert(self, snapshots: Sequence[QueueSnapshot]) -> None:
        if not snapshots:
            return
        cols = [list(col) for col in zip(*map(snapshot_row, snapshots), strict=True)]
        await self._write().execute(
            f"INSERT INTO queue_metrics ({SNAPSHOT_COLUMNS}) SELECT v.q, v.w, v.d, v.a, v.c, "
            "v.f, v.o, v.t FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], "
            "$5::int4[], $6::int4[], $7::float8[], $8::float8[]) WITH ORDINALITY "
            "AS v(q, w, d, a, c, f, o, t, ord) ORDER BY v.ord", *cols)

    async def snapshot_list(self, queue: str | None, start: float, end: float,
                            limit: int = 10_000) -> list[QueueSnapshot]:
        rows = await self._read().fetch(
            f"SELECT {SNAPSHOT_COLUMNS} FROM queue_metrics "
            "WHERE ($1::text IS NULL OR queue_name = $1) AND captured_at >= $2 "
            "AND captured_at < $3 ORDER BY captured_at, seq LIMIT $4", queue, start, end, limit)
        return [snapshot_from_row(r) for r in rows]

    async def snapshot_prune(self, before: float) -> int:
        return _count(await self._write().execute(
            "DELETE FROM queue_metrics WHERE captured_at < $1", before))

    # --- cron schedules -------------------------------------------------------------------------

    async def schedule_put(self, schedule: Schedule, *, replace: bool = False) -> bool:
        s = schedule
        conflict = ("DO UPDATE SET " + ", ".join(
            f"{c.strip()} = excluded.{c.strip()}" for c in SCHEDULE_COLUMNS.split(",")[1:])
            if replace else "DO NOTHING")
        status = await self._write().execute(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            f"$8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (name) {conflict}",
            s.name, s.cron, s.timezone, s.template_json, s.missed, s.tenant_id, s.user_id,
            s.created_at, s.last_slot, list(s.pending), s.pending_at, s.version, s.last_job_id,
            s.last_error, s.paused)
        return _count(status) == 1

    async def schedule_get(self, name: str) -> Schedule | None:
        r = await self._read().fetchrow(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = $1", name)
        return None if r is None else _schedule(r)

    async def schedule_list(self) -> list[Schedule]:
        rows = await self._read().fetch(f"SELECT {SCHEDULE_COLUMNS} FROM schedules "
                                        "ORDER BY name")
        return [_schedule(r) for r in rows]

    async def schedule_delete(self, name: str) -> bool:
        return _count(await self._write().execute(
            "DELETE FROM schedules WHERE name = $1", name)) == 1

    async def schedule_claim(self, name: str, version: int, *, last_slot: float,
                             pending: tuple[float, ...], at: float) -> Schedule | None:
        r = await self._write().fetchrow(
            "UPDATE schedules SET last_slot = $3, pending = $4::float8[], pending_at = $5, "
            "version = version + 1 WHERE name = $1 AND version = $2 "
            f"RETURNING {SCHEDULE_COLUMNS}", name, version, last_slot, list(pending),
            at if pending else None)
        return None if r is None else _schedule(r)

    async def schedule_settle(self, name: str, pending: tuple[float, ...], *,
                              job_id: str | None, error: str | None) -> Schedule | None:
        r = await self._write().fetchrow(
            "UPDATE schedules SET version = version + 1, last_error = $4, "
            "last_job_id = coalesce($3, last_job_id), "
            "pending_at = CASE WHEN pending = $2::float8[] THEN NULL ELSE pending_at END, "
            "pending = CASE WHEN pending = $2::float8[] THEN '{}' ELSE pending END "
            f"WHERE name = $1 RETURNING {SCHEDULE_COLUMNS}", name, list(pending), job_id,
            error)
        return None if r is None else _schedule(r)

    async def schedule_set_paused(self, name: str, paused: bool, *,
                                  at: float) -> Schedule | None:
        r = await self._write().fetchrow(
            "UPDATE schedules SET paused = $2, version = version + 1, "
            "last_slot = CASE WHEN $2 THEN last_slot ELSE greatest(last_slot, $3) END "
            f"WHERE name = $1 RETURNING {SCHEDULE_COLUMNS}", name, paused, at)
        return None if r is None else _schedule(r)
