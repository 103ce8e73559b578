"""Crontab parsing, validation and slot arithmetic (APScheduler's CronTrigger underneath)."""

from __future__ import annotations

import pytest
from schedkit import HOUR, T0, at

from tickq.scheduling.cron import Cron, CronError, slot_iso


@pytest.mark.parametrize(("expression", "zone", "field", "words"), [
    ("* * *", "UTC", "cron", "has 3 fields"),
    ("61 * * * *", "UTC", "cron", "not a valid crontab expression"),
    ("0 0 31 2 *", "UTC", "cron", "never fires"),
    ("0 * * * *", "Mars/Olympus", "timezone", "not an IANA time zone"),
    ("0 * * * *", "America", "timezone", "not an IANA time zone"),
    ("0 * * * *", "../etc/passwd", "timezone", "not an IANA time zone"),
])
def test_an_unusable_expression_or_zone_is_refused_naming_the_field(
        expression: str, zone: str, field: str, words: str) -> None:
    with pytest.raises(CronError) as info:
        Cron.parse(expression, zone, now=T0)
    assert info.value.field == field and words in info.value.message


def test_slots_are_read_in_the_schedules_time_zone_across_daylight_saving() -> None:
    nine_in_paris = Cron.parse("0 9 * * *", "Europe/Paris")
    assert nine_in_paris.next_after(at("2026-01-05T00:00:00")) == at("2026-01-05T08:00:00")
    assert nine_in_paris.next_after(at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")


def test_next_after_is_strictly_after_a_slot() -> None:
    hourly = Cron.parse("0 * * * *", "UTC")
    assert hourly.next_after(T0) == T0 + HOUR
    assert hourly.next_after(T0 - 0.5) == T0


def test_slots_latest_and_previous_between_two_instants() -> None:
    every_15 = Cron.parse("*/15 * * * *", "UTC")
    assert every_15.slots(T0, T0 + HOUR, limit=10) == [T0 + 900 * i for i in range(1, 5)]
    assert every_15.slots(T0, T0 + HOUR, limit=2) == [T0 + 900, T0 + 1800]
    assert every_15.latest(T0, T0 + HOUR - 1) == T0 + 2700
    assert every_15.latest(T0, T0 + 899) is None
    assert every_15.previous(T0 + 2700, T0) == T0 + 1800
    assert every_15.previous(T0 + 900, T0) is None


def test_latest_finds_a_rare_slot_far_back_without_walking_every_day() -> None:
    yearly = Cron.parse("0 0 1 1 *", "UTC")
    assert yearly.latest(at("2020-06-01T00:00:00"), at("2026-06-01T00:00:00")) == at(
        "2026-01-01T00:00:00")
    assert yearly.latest(at("2026-01-01T00:00:00"), at("2026-06-01T00:00:00")) is None


def test_slot_names_are_utc_to_the_second() -> None:
    assert slot_iso(at("2026-01-05T09:00:00")) == "2026-01-05T09:00:00Z"
