"""The two log formats: JSON lines (the default) and text for people in development."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from tickq.logs import choose_format, configure_logging, request_id
from tickq.settings import load_settings

log = logging.getLogger("tickq.test.format")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("apscheduler").level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("apscheduler").setLevel(saved[2])


def test_development_on_a_terminal_writes_text_and_json_everywhere_else() -> None:
    assert choose_format(None, True, Terminal()) == "text"
    assert choose_format(None, True, io.StringIO()) == "json"  # piped or collected
    assert choose_format(None, False, Terminal()) == "json"
    assert choose_format("json", True, Terminal()) == "json"
    assert choose_format("text", False, io.StringIO()) == "text"
    assert load_settings({"LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings({}).log_format is None


def test_the_text_format_is_one_readable_line_with_context_first() -> None:
    stream = Terminal()
    configure_logging("INFO", stream, development=True)
    token = request_id.set("req-1")
    try:
        log.info("job %s done", "j1", extra={"event": "job_completed", "attempt": 2,
                                             "queue": "money", "jobId": "j1",
                                             "tenant": "t1", "note": "two words"})
    finally:
        request_id.reset(token)
    line = stream.getvalue().rstrip("\n")
    assert "\n" not in line
    stamp, level, rest = line.split(" ", 2)
    assert stamp.endswith("Z") and level == "INFO"
    assert rest.lstrip() == ("tickq.test.format: job j1 done  request_id=req-1 job_id=j1 "
                             "queue=money tenant_id=t1 event=job_completed attempt=2 "
                             'note="two words"')


def test_the_text_format_shows_the_traceback_below_redacted() -> None:
    stream = Terminal()
    configure_logging("INFO", stream, fmt="text")
    try:
        raise RuntimeError("no reply from fan@example.com")
    except RuntimeError:
        log.exception("send failed", extra={"password": "hunter2"})
    out = stream.getvalue()
    assert out.splitlines()[0].endswith("send failed  password=[secret]")
    assert "RuntimeError: no reply from [email]" in out
    assert "hunter2" not in out and "fan@example.com" not in out


def test_json_lines_put_request_job_queue_and_tenant_first_under_one_name() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    log.info("tick", extra={"tenantId": "t9", "queue": "communication", "jobId": "j7",
                            "event": "schedule_tick"})
    line = orjson.loads(stream.getvalue())
    assert list(line)[:7] == ["timestamp", "level", "logger", "message", "job_id", "queue",
                              "tenant_id"]
    assert (line["job_id"], line["queue"], line["tenant_id"], line["event"]) == (
        "j7", "communication", "t9", "schedule_tick")


def test_apschedulers_own_run_lines_stay_out_of_an_info_log() -> None:
    configure_logging("INFO", io.StringIO())
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
