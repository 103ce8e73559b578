"""Cron expressions: parsing, validation, and the slots (fire times) between two instants.

APScheduler's `CronTrigger.from_crontab` parses the five-field crontab syntax and gives the next
fire time in the expression's own time zone, with DST gaps and repeats handled as cron handles
them. Slots are epoch seconds (whole seconds); a tick's idempotency key names its slot in UTC, so
every node derives the same key for it whatever its local zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

#: a slot search looks back this far first, then sixteen times further each round, so finding
#: the latest slot costs the slots of one short window, not those of a long outage
_FIRST_WINDOW_S = 3600.0
_ONE_US = timedelta(microseconds=1)


class CronError(ValueError):
    """An expression or time zone that cannot be used; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Paris", "UTC"); `CronError` for anything else."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a relative key ("../x", "/etc/localtime"); OSError: a directory
        raise CronError("timezone", f"{name!r} is not an IANA time zone (such as "
                                    "'Europe/Paris', 'America/New_York' or 'UTC')") from None


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed five-field crontab expression in a time zone."""

    expression: str
    zone: ZoneInfo
    trigger: CronTrigger

    @classmethod
    def parse(cls, expression: str, timezone: str, *, now: float | None = None) -> Cron:
        """`CronError` naming the problem when the expression is not five valid crontab fields,
        the zone is unknown, or (given `now`) the expression never fires after `now`."""
        zone = parse_zone(timezone)
        fields = expression.split()
        if len(fields) != 5:
            raise CronError("cron", f"{expression!r} has {len(fields)} fields; a crontab "
                                    "expression has 5: minute hour day-of-month month "
                                    "day-of-week (such as '*/5 * * * *')")
        try:
            trigger = CronTrigger.from_crontab(" ".join(fields), timezone=zone)
        except ValueError as exc:
            raise CronError("cron", f"{expression!r} is not a valid crontab expression: "
                                    f"{exc}") from None
        cron = cls(" ".join(fields), zone, trigger)
        if now is not None and cron.next_after(now) is None:
            raise CronError("cron", f"{expression!r} never fires (no such date)")
        return cron

    def next_after(self, t: float) -> float | None:
        """The first slot strictly after `t`, or None when there is none."""
        # The trigger rounds its start up to a whole second, so a microsecond past `t` is
        # enough to move past a slot at `t` itself.
        fire = self.trigger.get_next_fire_time(None, datetime.fromtimestamp(t, UTC) + _ONE_US)
        return None if fire is None else fire.timestamp()

    def slots(self, after: float, until: float, limit: int) -> list[float]:
        """The slots in (after, until], oldest first, at most `limit`."""
        found: list[float] = []
        t = self.next_after(after)
        while t is not None and t <= until and len(found) < limit:
            found.append(t)
            t = self.next_after(t)
        return found

    def latest(self, after: float, until: float) -> float | None:
        """The newest slot in (after, until], or None when there is none."""
        if until <= after:
            return None
        window = _FIRST_WINDOW_S
        while True:
            start = max(after, until - window)
            last = None
            t = self.next_after(start)
            while t is not None and t <= until:
                last = t
                t = self.next_after(t)
            if last is not None or start <= after:
                return last
            window *= 16

    def previous(self, slot: float, after: float) -> float | None:
        """The newest slot before `slot` and after `after`, or None."""
        return self.latest(after, math.nextafter(slot, -math.inf))


def slot_iso(t: float) -> str:
    """A slot as UTC ISO-8601 to the second: "2026-01-05T09:00:00Z"."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["Cron", "CronError", "parse_zone", "slot_iso"]
