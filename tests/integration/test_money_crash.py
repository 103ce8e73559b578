"""Kill -9 an engine that is charging cards through Stripe (localstripe), again and again: every
acknowledged payment completes, and each one charged exactly once.

localstripe ignores Idempotency-Key, so nothing at the provider stops a second charge: only the
payment processor's lookup of the intent an interrupted attempt created (by the job id in its
metadata) does. localstripe runs in its own process for the whole test and survives every kill;
each engine process (`money_crash_child.py engine`) enqueues a few dozen payments while earlier
ones run, and is SIGKILLed at a random moment. The next one recovers what the killed one left
(its active jobs come back as stalled, to be reconciled). The kills go on until at least
`MIN_RUNS` have happened and one of them caught a job between its charge and its completion.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("money_crash_child.py")
MIN_RUNS, MAX_RUNS = 10, 16
JOBS_PER_RUN = 24
#: how long after an engine says it started it is killed, at random within
KILL_AFTER_S = (0.05, 0.5)
#: the whole test stops starting new runs after this long
BUDGET_S = 30.0


@contextmanager
def localstripe(folder: Path) -> Iterator[str]:
    log = (folder / "localstripe.err").open("wb")
    proc = subprocess.Popen([sys.executable, str(CHILD), "stripe"], stdout=subprocess.PIPE,
                            stderr=log)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening "), (folder / "localstripe.err").read_text()
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


def intents(base: str) -> list[dict[str, Any]]:
    """Every PaymentIntent localstripe holds, page by page."""
    found: list[dict[str, Any]] = []
    after = ""
    while True:
        url = f"{base}/v1/payment_intents?limit=100" + (f"&starting_after={after}" if after else "")
        request = urllib.request.Request(url, headers={
            "Authorization": "Bearer sk_test_tickq_crash"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            page = json.load(resp)
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


def journal_jobs(journal: Path) -> dict[str, tuple[str, str | None]]:
    """job id -> (state, result JSON) of every payment job in the journal."""
    if not journal.exists():
        return {}
    with closing(sqlite3.connect(journal, timeout=10)) as conn:
        try:
            rows = conn.execute("SELECT id, state, result FROM jobs "
                                "WHERE type='payment-process'").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
    return {row[0]: (row[1], row[2]) for row in rows}


def read_acks(out: Path) -> dict[str, str]:
    """job id -> key of every complete `ack` line (a line cut off by the kill was never sent)."""
    acks = {}
    for line in out.read_bytes().decode(errors="replace").splitlines(keepends=True):
        if line.startswith("ack ") and line.endswith("\n"):
            _, job_id, key = line.split()
            acks[job_id] = key
    return acks


def caught_mid_charge(journal: Path, base: str) -> int:
    """Jobs the journal shows running whose PaymentIntent already exists: killed after the
    charge and before the completion was journaled."""
    active = {job_id for job_id, (state, _) in journal_jobs(journal).items()
              if state == "active"}
    charged = {(i.get("metadata") or {}).get("tickq_job_id") for i in intents(base)}
    return len(active & charged)


def wait_started(out: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if b"started " in out.read_bytes():
            return
        assert proc.poll() is None, out.with_suffix(".err").read_text()
        time.sleep(0.01)
    raise AssertionError("the engine did not start in time")


def test_kills_mid_payment_lose_no_acknowledged_job_and_charge_each_once(tmp_path: Path) -> None:
    rng = random.Random()
    journal = tmp_path / "journal.db"
    began = time.monotonic()
    acknowledged: dict[str, str] = {}
    caught = runs = 0
    with localstripe(tmp_path) as base:
        while runs < MIN_RUNS or (not caught and runs < MAX_RUNS
                                  and time.monotonic() - began < BUDGET_S):
            out = tmp_path / f"run{runs}.out"
            with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, str(CHILD), "engine", str(journal), base,
                     "--enqueue", str(JOBS_PER_RUN), "--prefix", f"run{runs}"],
                    stdout=stdout, stderr=stderr)
            try:
                wait_started(out, proc, time.monotonic() + 15)
                time.sleep(rng.uniform(*KILL_AFTER_S))
                assert proc.poll() is None, (
                    f"the engine exited before the kill: {out.with_suffix('.err').read_text()}")
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait(5)
            assert proc.returncode == -signal.SIGKILL
            acknowledged.update(read_acks(out))
            caught += caught_mid_charge(journal, base)
            runs += 1

        drain = subprocess.run([sys.executable, str(CHILD), "engine", str(journal), base,
                                "--drain"], capture_output=True, timeout=30)
        assert drain.returncode == 0, drain.stderr.decode()[-3000:]
        assert drain.stdout.decode().splitlines()[-1].startswith("drained ")
        charged = intents(base)

    assert caught, f"no kill in {runs} runs landed between a charge and its completion"
    jobs = journal_jobs(journal)
    assert len(acknowledged) >= JOBS_PER_RUN, "too few payments were acknowledged to judge"
    for job_id in acknowledged:
        assert job_id in jobs, f"acknowledged job {job_id} is not in the journal"
    assert {state for state, _ in jobs.values()} == {"completed"}

    # Exactly one PaymentIntent per job, succeeded, and the one the job's result names.
    per_job = Counter((i.get("metadata") or {}).get("tickq_job_id") for i in charged)
    doubled = {job_id: n for job_id, n in per_job.items() if n > 1}
    assert not doubled, f"charged more than once: {doubled}"
    assert set(per_job) == set(jobs), "a charge without a job, or a job without a charge"
    assert {i["status"] for i in charged} == {"succeeded"}
    by_job = {i["metadata"]["tickq_job_id"]: i for i in charged}
    for job_id, (_, result) in jobs.items():
        assert result is not None
        recorded = orjson.loads(result)
        assert recorded["paymentIntentId"] == by_job[job_id]["id"], job_id
        assert recorded["status"] == "succeeded"
        assert by_job[job_id]["metadata"]["idempotency_key"] == acknowledged.get(
            job_id, by_job[job_id]["metadata"]["idempotency_key"])
