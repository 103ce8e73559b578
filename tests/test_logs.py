"""Log records become one JSON object per line, `extra` fields included."""

from __future__ import annotations

import io
import logging

import orjson

from tickq.logs import configure_logging


def test_records_are_json_lines_with_extra_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", stream)
        log = logging.getLogger("tickq.test")
        log.debug("not shown")
        log.info("job %s done", "j1", extra={"event": "job_completed", "job_id": "j1",
                                             "queue": "money", "attempt": 2})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed", extra={"event": "job_failed"})
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job j1 done" and first["level"] == "INFO"
    assert first["logger"] == "tickq.test" and first["timestamp"].endswith("Z")
    assert (first["event"], first["job_id"], first["queue"], first["attempt"]) == (
        "job_completed", "j1", "money", 2)
    assert "args" not in first and "msg" not in first
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]
