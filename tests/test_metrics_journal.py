"""Journal commit latency and batch size, observed through the SQLite journal's commit hook,
agree exactly with the journal's own commit and row counts."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tickq
from tickq.metrics import Metrics
from tickq.storage.sqlite import SqliteStore


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_every_commit_is_timed_and_sized(tmp_path: Path) -> None:
    store = tickq.open_store(f"sqlite:///{tmp_path}/jobs.db")
    assert isinstance(store, SqliteStore)
    engine = tickq.Engine(store, shutdown_grace_s=1.0)
    engine.register("send-email", lambda job: {"sent": True})
    metrics = Metrics(engine)
    metrics.subscribe()
    assert not metrics.attach_journal()  # not open yet: nothing to watch
    async with engine:
        assert metrics.attach_journal()
        journal = store.journal
        commits, rows = journal.commits, journal.rows
        specs = [tickq.JobSpec(type="send-email", data={"to": f"f{i}@example.com",
                                                        "template": "admin-alert"})
                 for i in range(25)]
        jobs = [e.job for e in await engine.enqueue_many(specs)]
        for job in jobs:
            await engine.wait(job.id, timeout=10)
        await journal.flush()
        s = samples(metrics)
        timed, carried = journal.commits - commits, journal.rows - rows

    assert timed >= 2  # the enqueue, then claims and completions
    assert carried >= 25 * 2  # each job inserted, then claimed or completed at least once
    assert s[("journal_commit_duration_seconds_count", frozenset())] == timed
    assert 0 < s[("journal_commit_duration_seconds_sum", frozenset())] < timed * 5
    assert s[("journal_commit_batch_jobs_count", frozenset())] == timed
    assert s[("journal_commit_batch_jobs_sum", frozenset())] == carried
    assert s[("journal_commits_total", frozenset())] == journal.commits
    assert s[("journal_rows_total", frozenset())] == journal.rows
    metrics.close()
    assert journal.on_commit is None


async def test_a_memory_store_has_no_journal_metrics() -> None:
    async with tickq.open("memory://") as engine:
        metrics = Metrics(engine)
        metrics.subscribe()
        s = samples(metrics)
    assert not metrics.attach_journal()
    assert not any(name.startswith("journal_commits") for name, _ in s)
    assert s[("journal_commit_duration_seconds_count", frozenset())] == 0
