"""Kill -9 in the middle of a run of money jobs: nothing acknowledged is lost, nothing is charged
twice.

`crash_worker.py` enqueues charges and runs them against a fake provider (its own SQLite file)
that honours idempotency keys. The test kills it while jobs are running, until the kill has caught
at least one job after its side effect and before its completion was journaled (so recovery must
run it again), restarts it to drain, and then compares journal and provider.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("crash_worker.py")
JOBS_PER_RUN = 3000
MAX_KILLS = 5
#: a kill waits for this many acknowledged jobs and executions of the current run
MIN_ACKS, MIN_EXECUTIONS = 300, 100


def start_worker(journal: Path, provider: Path, out: Path, *args: str) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        return subprocess.Popen([sys.executable, str(WORKER), str(journal), str(provider), *args],
                                stdout=stdout, stderr=stderr, cwd=out.parent)


def read_acks(out: Path) -> list[tuple[str, str]]:
    """(job id, key) of every complete `ack` line; a line cut off by the kill was never sent."""
    acks = []
    for line in out.read_bytes().decode().splitlines(keepends=True):
        if line.startswith("ack ") and line.endswith("\n"):
            _, job_id, key, _created = line.split()
            acks.append((job_id, key))
    return acks


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def executions(provider: Path) -> int:
    rows = query(provider, "SELECT COUNT(*) FROM executions")
    return int(rows[0][0]) if rows else 0


def charged_but_running(journal: Path, provider: Path) -> int:
    """Jobs the journal shows running whose charge the provider already recorded."""
    running = {row[0] for row in query(journal, "SELECT idempotency_key FROM jobs "
                                                "WHERE state='active'")}
    charged = {row[0] for row in query(provider, "SELECT idempotency_key FROM charges")}
    return len(running & charged)


def test_kill_mid_run_loses_no_acknowledged_job_and_charges_each_key_once(tmp_path: Path) -> None:
    journal, provider = tmp_path / "journal.db", tmp_path / "provider.db"
    acknowledged: dict[str, str] = {}  # idempotency key -> job id
    caught_mid_charge = 0
    deadline = time.monotonic() + 20

    for run in range(MAX_KILLS):
        out = tmp_path / f"run{run}.out"
        before = executions(provider)
        worker = start_worker(journal, provider, out, "--enqueue", str(JOBS_PER_RUN),
                              "--key-prefix", f"run{run}-order")
        try:
            while time.monotonic() < deadline and worker.poll() is None:
                if (len(read_acks(out)) >= MIN_ACKS
                        and executions(provider) - before >= MIN_EXECUTIONS):
                    break
                time.sleep(0.01)
            err = out.with_suffix(".err")
            assert worker.poll() is None, f"the worker ended before a kill: {err.read_text()}"
            worker.send_signal(signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait(5)
        assert worker.returncode == -signal.SIGKILL
        for job_id, key in read_acks(out):
            # An acknowledgement is final: the key keeps naming the job it named.
            assert acknowledged.setdefault(key, job_id) == job_id
        caught_mid_charge = charged_but_running(journal, provider)
        if caught_mid_charge:
            break
    assert caught_mid_charge, f"no kill in {MAX_KILLS} landed between a charge and its completion"
    active_at_kill = query(journal, "SELECT COUNT(*) FROM jobs WHERE state='active'")[0][0]

    drain = subprocess.run([sys.executable, str(WORKER), str(journal), str(provider), "--drain"],
                           capture_output=True, timeout=30, cwd=tmp_path)
    assert drain.returncode == 0, drain.stderr.decode()
    lines = drain.stdout.decode().splitlines()
    assert lines[0].startswith("started ")
    assert lines[0].endswith(f"stalled={active_at_kill}"), "recovery must count every stall"
    assert lines[-1].startswith("drained ")

    jobs = {row[0]: row for row in query(
        journal, "SELECT id, idempotency_key, state, attempts, stalls, result FROM jobs "
                 "WHERE type='charge'")}
    # Every acknowledged job completed; one job per key, acknowledged or not.
    assert len(acknowledged) >= MIN_ACKS
    for key, job_id in acknowledged.items():
        assert job_id in jobs, f"acknowledged job {job_id} ({key}) is not in the journal"
        assert jobs[job_id][2] == "completed", f"acknowledged job {job_id} is {jobs[job_id][2]}"
    keys = Counter(row[1] for row in jobs.values())
    assert all(n == 1 for n in keys.values()), "a key was given to two jobs"
    assert {row[2] for row in jobs.values()} == {"completed"}

    # The provider charged every job exactly once, and each job's result names that charge.
    charges: dict[str, list[str]] = defaultdict(list)
    for key, charge_id in query(provider, "SELECT idempotency_key, charge_id FROM charges"):
        charges[key].append(charge_id)
    doubled = {k: v for k, v in charges.items() if len(v) > 1}
    assert not doubled, f"charged twice: {list(doubled)[:5]}"
    assert set(charges) == set(keys)
    for job_id, key, _, _, _, result in jobs.values():
        assert orjson.loads(result)["charge_id"] == charges[key][0], job_id

    # Runs were repeated only where a crash interrupted them, never twice in one attempt.
    runs: dict[str, list[int]] = defaultdict(list)
    for job_id, attempt in query(provider, "SELECT job_id, attempt FROM executions"):
        runs[job_id].append(attempt)
    assert set(runs) == set(jobs)
    for job_id, (_, _, _, attempts, stalls, _) in jobs.items():
        assert attempts == stalls + 1, f"{job_id}: {attempts} attempts, {stalls} stalls"
        assert len(runs[job_id]) == len(set(runs[job_id])) <= attempts, (job_id, runs[job_id])

    total_stalls = sum(row[4] for row in jobs.values())
    replays = sum(len(r) for r in runs.values()) - len(charges)
    assert total_stalls >= active_at_kill > 0
    assert replays >= caught_mid_charge, "a job charged before the kill must be re-run on recovery"
