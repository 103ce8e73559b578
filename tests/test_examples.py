"""The examples run as they are documented and do what they say."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import orjson
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PEOPLE = ("ada@example.com", "grace@example.com", "alan@example.com", "edsger@example.com")


def run_example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.slow
def test_embed_runs_single_and_batch_jobs_and_journals_them(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    out = run_example("embed.py", f"sqlite:///{db}", cwd=tmp_path).splitlines()

    single = [line for line in out if line.startswith("single: ")]
    batch = [line for line in out if line.startswith("batch: ")]
    assert len(single) == 1 and "'sent_to': 'ada@example.com'" in single[0]
    assert [p for line in batch for p in PEOPLE if f"'sent_to': '{p}'" in line] == list(PEOPLE[1:])
    assert "completed=4" in out[-1] and "failed=0" in out[-1]

    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT id, state, attempts, result FROM jobs "
                            "WHERE type='send-welcome'").fetchall()
    assert len(rows) == 4
    assert {(state, attempts) for _, state, attempts, _ in rows} == {("completed", 1)}
    # The journal holds what each processor returned.
    assert sorted(orjson.loads(r)["sent_to"] for *_, r in rows) == sorted(PEOPLE)
    assert all(orjson.loads(r)["job_id"] == job_id for job_id, *_, r in rows)

    # A second run on the same file opens the journal again (the first released it).
    run_example("embed.py", f"sqlite:///{db}", cwd=tmp_path)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE state='completed'").fetchone() == (8,)


@pytest.mark.slow
def test_embed_without_arguments_uses_a_temporary_journal(tmp_path: Path) -> None:
    out = run_example("embed.py", cwd=tmp_path)
    assert out.count("batch: ") == 3 and "completed=4" in out
    assert list(tmp_path.iterdir()) == []
