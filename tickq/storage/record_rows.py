"""Rows of the analytics and report tables as records, for every SQL store: the two tables have
the same columns in SQLite and PostgreSQL, so their column lists and row readers are shared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickq.storage.base import AnalyticsEvent

EVENT_COLUMNS = ("id, tenant_id, event_type, venue_id, user_id, event_id, data, occurred_at, "
                 "recorded_at")
REPORT_COLUMNS = ("id, tenant_id, user_id, venue_id, report_type, format, period_start, "
                  "period_end, created_at, content_type, size, job_id")


def event_from_row(r: Sequence[Any]) -> AnalyticsEvent:
    return AnalyticsEvent(id=r[0], tenant_id=r[1], event_type=r[2], venue_id=r[3], user_id=r[4],
                          event_id=r[5], data_json=bytes(r[6]), occurred_at=r[7],
                          recorded_at=r[8])


def report_fields(r: Sequence[Any]) -> dict[str, Any]:
    """A report row (REPORT_COLUMNS order) as `ReportInfo`/`Report` keyword arguments."""
    return {"id": r[0], "tenant_id": r[1], "user_id": r[2], "venue_id": r[3],
            "report_type": r[4], "format": r[5], "period_start": r[6], "period_end": r[7],
            "created_at": r[8], "content_type": r[9], "size": r[10], "job_id": r[11]}
