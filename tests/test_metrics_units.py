"""The pieces of the metrics on their own: the per-minute activity ring, label capping, the
process's memory and CPU readings, and failure grouping."""

from __future__ import annotations

import time

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tickq.engine.job import ErrorEntry, Job, append_error
from tickq.engine.states import JobState
from tickq.metrics_analysis import error_code, group_failures
from tickq.metrics_labels import MAX_LABEL_LENGTH, OTHER, UNKNOWN, LabelGuard
from tickq.metrics_process import CpuMeter, memory_bytes
from tickq.metrics_recent import COMPLETED, FAILED, RETRIED, RecentActivity

T0 = 1_800_000_000.0  # a minute boundary


# --- the per-minute ring --------------------------------------------------------------------


def test_window_counts_per_queue_and_minute_newest_first_with_zeros() -> None:
    ring = RecentActivity()
    for _ in range(3):
        ring.add("money", COMPLETED, T0 + 5)
    ring.add("money", FAILED, T0 + 59.9)
    ring.add("communication", COMPLETED, T0 + 60)
    ring.add("money", RETRIED, T0 + 125)

    rows = ring.window(T0 + 130, 3, ["money", "communication"])

    assert [(r.queue, r.minute - T0, r.completed, r.failed, r.retried) for r in rows] == [
        ("money", 120, 0, 0, 1), ("communication", 120, 0, 0, 0),
        ("money", 60, 0, 0, 0), ("communication", 60, 1, 0, 0),
        ("money", 0, 3, 1, 0), ("communication", 0, 0, 0, 0)]
    assert ring.totals["money"].completed == 3 and ring.totals["money"].failed == 1
    assert ring.per_minute("money", T0 + 130, 2) == 1.5  # 3 in minutes 0 and 1, the whole ones
    assert ring.per_minute("money", T0 + 70, 1) == 3.0


def test_an_event_a_little_out_of_order_lands_in_its_own_minute() -> None:
    ring = RecentActivity()
    ring.add("money", COMPLETED, T0 + 130)
    ring.add("money", COMPLETED, T0 + 10)   # older than the newest bucket
    ring.add("money", COMPLETED, T0 + 70)   # between two kept buckets
    rows = {r.minute - T0: r.completed for r in ring.window(T0 + 130, 3, ["money"])}
    assert rows == {120: 1, 60: 1, 0: 1}


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                          st.floats(min_value=0, max_value=6 * 3600)), max_size=300))
def test_the_ring_never_keeps_more_than_its_minutes(events: list[tuple[str, float]]) -> None:
    ring = RecentActivity(keep_minutes=60)
    newest = T0
    for queue, offset in sorted(events, key=lambda e: e[1]):
        ring.add(queue, COMPLETED, T0 + offset)
        newest = T0 + offset
        assert len(ring._minutes) <= 60
    in_window = sum(1 for _, offset in events
                    if int((T0 + offset) // 60) > int(newest // 60) - 60)
    counted = sum(r.completed for r in ring.window(newest, 60, ["a", "b", "c"]))
    assert counted == in_window
    assert sum(t.completed for t in ring.totals.values()) == len(events)


# --- label capping --------------------------------------------------------------------------


def test_label_values_are_capped_cut_and_never_empty() -> None:
    guard = LabelGuard(limit=3)
    assert [guard(v) for v in ("a", "b", "c", "d", "a")] == ["a", "b", "c", OTHER, "a"]
    assert guard("x" * 500) == OTHER  # a new value past the cap
    assert LabelGuard()("y" * 500) == "y" * MAX_LABEL_LENGTH
    assert LabelGuard()("  ") == UNKNOWN and LabelGuard()(None) == UNKNOWN
    assert LabelGuard()(42) == UNKNOWN


# --- memory and CPU -------------------------------------------------------------------------


def test_memory_readings_are_plausible() -> None:
    memory = memory_bytes()
    assert 10 * 2**20 < memory["peak_rss"] < 16 * 2**30
    if "rss" in memory:  # Linux
        assert 10 * 2**20 < memory["rss"] <= memory["virtual"]
        assert memory["rss"] <= memory["peak_rss"] * 1.01


def test_cpu_percent_follows_the_work_done_between_readings() -> None:
    meter = CpuMeter(min_window_s=0.2)
    wall, cpu = time.monotonic(), time.process_time()
    while time.process_time() < cpu + 0.3:  # busy for 0.3 s of CPU time
        sum(range(1000))
    expected = 100 * (time.process_time() - cpu) / (time.monotonic() - wall)
    busy = meter.read()
    # On a machine others share, a busy loop may get less than a whole core: compare with what
    # this process measured around the loop rather than with 100.
    assert expected > 5 and abs(busy.percent - expected) < 0.2 * expected
    assert busy.user_s + busy.system_s >= 0.3
    repeat = meter.read()  # within the window: the same reading, not a millisecond's noise
    assert repeat.percent == busy.percent
    time.sleep(0.25)  # idle: the next window reads (almost) nothing
    assert meter.read().percent < 20


# --- failure grouping -----------------------------------------------------------------------


def dead(job_id: str, queue: str, type_name: str, at: float, *codes: str | None) -> Job:
    job = Job(id=job_id, queue=queue, type=type_name, data_json=b"{}", priority=5,
              max_attempts=3, run_at=at, created_at=at, state=JobState.FAILED, finished_at=at)
    for attempt, code in enumerate(codes, 1):
        job.errors_json = append_error(job.errors_json, ErrorEntry(
            attempt=attempt, type="PermanentError", message="no", at=at, code=code))
    return job


def test_failures_group_by_type_and_by_last_error_code() -> None:
    jobs = [dead("1", "money", "payment-process", T0 + 1, "timeout", "card_declined"),
            dead("2", "money", "payment-process", T0 + 5, "card_declined"),
            dead("3", "money", "payment-process", T0 + 3, "expired_card"),
            dead("4", "communication", "send-email", T0 + 9, "smtp_550"),
            dead("5", "communication", "send-email", T0 + 2, None)]
    by_type, by_error = group_failures(jobs)
    assert [(g.queue, g.job_type, g.count, g.last_failure - T0) for g in by_type] == [
        ("money", "payment-process", 3, 5), ("communication", "send-email", 2, 9)]
    assert [(g.job_type, g.error_code, g.count, g.last_failure - T0) for g in by_error] == [
        ("payment-process", "card_declined", 2, 5), ("send-email", "smtp_550", 1, 9),
        ("payment-process", "expired_card", 1, 3), ("send-email", "PermanentError", 1, 2)]


def test_error_code_of_a_job_without_history_is_unknown() -> None:
    assert error_code(dead("1", "money", "payment-process", T0)) == "unknown"
    broken = dead("2", "money", "payment-process", T0)
    broken.errors_json = orjson.dumps({"not": "a list"})
    assert error_code(broken) == "unknown"
