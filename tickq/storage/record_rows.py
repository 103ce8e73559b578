"""Rows of the analytics, report, monitor and schedule tables as records, for every SQL store:
these tables have the same columns in SQLite and PostgreSQL, so their column lists and the row
readers that do not depend on a column's type are shared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tickq.storage.base import AlertRecord, AnalyticsEvent, QueueSnapshot

EVENT_COLUMNS = ("id, tenant_id, event_type, venue_id, user_id, event_id, data, occurred_at, "
                 "recorded_at")
REPORT_COLUMNS = ("id, tenant_id, user_id, venue_id, report_type, format, period_start, "
                  "period_end, created_at, content_type, size, job_id")
ALERT_FIELDS = ("id", "severity", "alert_type", "message", "queue_name", "metric_value",
                "threshold_value", "channels", "acknowledged", "acknowledged_by",
                "acknowledged_at", "created_at")
ALERT_COLUMNS = ", ".join(ALERT_FIELDS)
SNAPSHOT_FIELDS = ("queue_name", "waiting_count", "delayed_count", "active_count",
                   "completed_count", "failed_count", "oldest_age_s", "captured_at")
SNAPSHOT_COLUMNS = ", ".join(SNAPSHOT_FIELDS)
SCHEDULE_COLUMNS = ("name, cron, timezone, template, missed, tenant_id, user_id, created_at, "
                    "last_slot, pending, pending_at, version, last_job_id, last_error, paused")


def event_from_row(r: Sequence[Any]) -> AnalyticsEvent:
    return AnalyticsEvent(id=r[0], tenant_id=r[1], event_type=r[2], venue_id=r[3], user_id=r[4],
                          event_id=r[5], data_json=bytes(r[6]), occurred_at=r[7],
                          recorded_at=r[8])


def alert_from_row(r: Sequence[Any]) -> AlertRecord:
    """An alert row (ALERT_FIELDS order); `channels` is JSON text in either store (SQLite TEXT,
    PostgreSQL jsonb as asyncpg hands it over) and `acknowledged` an integer or a boolean."""
    channels = orjson.loads(r[7]) if r[7] else {}
    return AlertRecord(id=int(r[0]), severity=r[1], alert_type=r[2], message=r[3],
                       queue_name=r[4], metric_value=r[5], threshold_value=r[6],
                       channels=channels if isinstance(channels, dict) else {},
                       acknowledged=bool(r[8]), acknowledged_by=r[9], acknowledged_at=r[10],
                       created_at=r[11])


def snapshot_row(s: QueueSnapshot) -> tuple[Any, ...]:
    return tuple(getattr(s, name) for name in SNAPSHOT_FIELDS)


def snapshot_from_row(r: Sequence[Any]) -> QueueSnapshot:
    return QueueSnapshot(**dict(zip(SNAPSHOT_FIELDS, r, strict=True)))


def report_fields(r: Sequence[Any]) -> dict[str, Any]:
    """A report row (REPORT_COLUMNS order) as `ReportInfo`/`Report` keyword arguments."""
    return {"id": r[0], "tenant_id": r[1], "user_id": r[2], "venue_id": r[3],
            "report_type": r[4], "format": r[5], "period_start": r[6], "period_end": r[7],
            "created_at": r[8], "content_type": r[9], "size": r[10], "job_id": r[11]}
