"""`tickq jobs|queues|dlq|limits` against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from httpkit import Api, email, payment, token

from tickq.cli import main


async def tickq(api: Api, capsys: pytest.CaptureFixture[str], *argv: str,
                role: str = "admin") -> tuple[int, str, str]:
    url = str(api.client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, [*argv, "--url", url, "--token", token(role)])
    out, err = capsys.readouterr()
    return code, out, err


async def test_queues_list_pause_resume(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await api.enqueue(payment())
    code, out, _ = await tickq(api, capsys, "queues")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["QUEUE", "TIER", "WAITING", "DELAYED", "ACTIVE", "COMPLETED",
                                "FAILED", "PAUSED"]
    money = next(line for line in lines if line.startswith("money"))
    assert money.split()[2] == "1" and money.split()[-1] == "yes"
    assert lines[1].index(lines[1].split()[1]) == lines[0].index("TIER")  # aligned
    code, out, _ = await tickq(api, capsys, "queues", "resume", "money")
    assert (code, out.strip()) == (0, "Queue has been resumed")
    code, out, _ = await tickq(api, capsys, "queues", "list", "--json")
    assert code == 0
    assert {q["name"]: q["paused"] for q in json.loads(out)}["money"] is False


async def test_jobs_list_get_cancel_retry(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    job = await api.enqueue(payment())
    code, out, _ = await tickq(api, capsys, "jobs", "list", "--queue", "money")
    assert code == 0 and job in out and "payment-process" in out
    code, out, _ = await tickq(api, capsys, "jobs", "get", job)
    assert code == 0 and f"\nid              {job}\n" in out
    code, out, _ = await tickq(api, capsys, "jobs", "--json", "get", job)
    assert json.loads(out)["id"] == job
    code, out, _ = await tickq(api, capsys, "jobs", "cancel", job)
    assert (code, out.strip()) == (0, "Job has been cancelled")
    code, out, err = await tickq(api, capsys, "jobs", "retry", job)
    assert code == 1 and out == ""
    assert err.startswith("tickq: 409 ") and "illegal_transition" in err


async def test_dlq_list_and_retry(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    dead = await api.enqueue({**email(), "type": "send-push",
                              "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(dead, "failed")
    code, out, _ = await tickq(api, capsys, "dlq")
    assert code == 0 and dead in out and "push provider refused" in out
    code, out, _ = await tickq(api, capsys, "dlq", "retry", dead, "missing")
    assert code == 0
    assert f"{dead}  retrying" in out and "job missing not found" in out


async def test_limits_status_stop_resume(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await tickq(api, capsys, "limits", "stop", "stripe")
    assert (code, out.strip()) == (0, "The rate limiter for stripe has been paused")
    code, out, _ = await tickq(api, capsys, "limits")
    stripe = next(line for line in out.splitlines() if line.startswith("stripe "))
    assert stripe.split()[-2] == "yes"
    code, out, _ = await tickq(api, capsys, "limits", "resume")
    assert (code, out.strip()) == (0, "All rate limiters have been resumed")


async def test_errors_exit_non_zero_with_the_servers_message(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await tickq(api, capsys, "queues", "pause", "money", role="user")
    assert code == 1 and err.startswith("tickq: 403 ") and "[forbidden]" in err
    code, _, err = await tickq(api, capsys, "queues", "pause", "nosuch")
    assert code == 1 and "queue_not_found" in err


def test_unreachable_server(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TICKQ_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TICKQ_TOKEN", "x")
    assert main(["queues"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the server at http://127.0.0.1:{port}" in err
