"""The look-back analyses over a SQLite journal across a restart: failures grouped from the
dead-letter jobs read back from the file, queue averages and alert counts from stored snapshots
and alerts."""

from __future__ import annotations

from pathlib import Path

import tickq
from tickq.engine.job import Job
from tickq.errors import PermanentError
from tickq.metrics_analysis import failures, summary
from tickq.storage.base import NewAlert, QueueSnapshot


def _refuse(job: Job) -> None:
    raise PermanentError("mailbox unavailable", code=f"smtp_{job.data['to'][:3]}")


async def test_failures_and_summary_read_what_a_previous_run_left(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    async with tickq.open(url, shutdown_grace_s=1.0) as engine:
        engine.register("send-email", _refuse)
        jobs = [await engine.enqueue("send-email", {"to": f"{box}@example.com",
                                                    "template": "admin-alert"})
                for box in ("550-a", "550-b", "554-a")]
        for job in jobs:
            assert (await engine.wait(job.id, timeout=10)).state is tickq.JobState.FAILED
        now = engine.clock.now()
        await engine.store.snapshot_insert([
            QueueSnapshot(queue_name="communication", waiting_count=w, delayed_count=0,
                          active_count=1, completed_count=0, failed_count=f,
                          captured_at=now - age)
            for w, f, age in ((10, 1, 1200), (20, 3, 600))])
        await engine.store.alert_insert(NewAlert(
            severity="warning", alert_type="queue_depth", message="deep", created_at=now - 60))

    async with tickq.open(url, shutdown_grace_s=1.0) as engine:
        now = engine.clock.now()
        found = await failures(engine, now, hours=1)
        brief = await summary(engine, now)

    assert [(g.job_type, g.count) for g in found.by_type] == [("send-email", 3)]
    assert [(g.error_code, g.count) for g in found.by_error] == [("smtp_550", 2),
                                                                 ("smtp_554", 1)]
    assert found.scanned == 3 and not found.truncated
    assert sum(t.failures for t in found.trends) == 3
    [comm] = brief.queues
    assert (comm.queue, comm.samples, comm.average(comm.waiting_sum), comm.max_waiting,
            comm.average(comm.failed_sum)) == ("communication", 2, 15.0, 20, 2.0)
    assert brief.alerts == [("warning", 1)]
