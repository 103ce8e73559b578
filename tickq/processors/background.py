"""The background integration: `analytics-track`, `generate-report` and `cleanup-old-data`.

It needs no outside provider and no setting, so it is always configured. Its processors work on
the store the engine runs on: analytics events and reports are kept there durably (the jobs
themselves are memory-tier and gone on restart by design), and cleanup prunes it.

The processors live in `analytics.py`, `reports.py` and `cleanup.py`; this module makes the
integration and holds the time parsing they share. Times in job data are ISO 8601 (a date, or a
date and time; without an offset, UTC); inside tickq they are epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tickq.errors import PermanentError
from tickq.processors.base import Integration, Processor

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

#: longest date or time text looked at (anything longer is not a date)
MAX_DATE_CHARS = 64


def parse_instant(value: Any, field: str, *, end_of_day: bool = False) -> float:
    """`value` (ISO 8601 date or date-time) as epoch seconds. A bare date is its midnight (UTC),
    or with `end_of_day` the next midnight, so that "endDate": "2025-01-31" includes that day.
    Anything else is a `PermanentError` naming `field`: a retry cannot fix the job's data."""
    text = value.strip() if isinstance(value, str) else None
    if not text or len(text) > MAX_DATE_CHARS:
        raise PermanentError(f"{field} must be an ISO 8601 date or date-time, got {value!r}"[:200],
                             code="invalid_date")
    try:
        return _instant(text, end_of_day)
    except (ValueError, OverflowError):
        raise PermanentError(f"{field} is not an ISO 8601 date or date-time: {text!r}",
                             code="invalid_date") from None


def _instant(text: str, end_of_day: bool) -> float:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (start + timedelta(days=1) if end_of_day else start).timestamp()


def text_field(data: Mapping[str, Any], name: str) -> str | None:
    """An optional string field of job data (None when absent or not a string)."""
    value = data.get(name)
    return value if isinstance(value, str) and value else None


class BackgroundIntegration(Integration):
    name = "background"
    job_types = ("analytics-track", "generate-report", "cleanup-old-data")
    providers = ()

    def __init__(self, settings: Settings, engine: Engine) -> None:
        # Imported here: those modules import the helpers above from this one.
        from tickq.processors.analytics import AnalyticsTracker, EventBatcher
        from tickq.processors.cleanup import Cleaner
        from tickq.processors.reports import ReportMaker

        super().__init__()
        self.batcher = EventBatcher(engine.store)
        self.tracker = AnalyticsTracker(engine, self.batcher)
        self.reports = ReportMaker(engine)
        self.cleaner = Cleaner(engine, settings.data_dir)

    def processors(self) -> Mapping[str, Processor]:
        return {"analytics-track": self.tracker.track,
                "generate-report": self.reports.generate,
                "cleanup-old-data": self.cleaner.clean}

    async def close(self) -> None:
        await self.batcher.close()


def integration(settings: Settings, engine: Engine) -> Integration:
    return BackgroundIntegration(settings, engine)
