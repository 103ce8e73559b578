"""The audit trail: every operator action is recorded with who, what, when and how it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from httpkit import JOBS, Api, auth, email, payment, serve_api

AUDIT = "/api/v1/queue/audit"
Q = "/api/v1/queue/queues"
RL = "/api/v1/queue/rate-limits"


async def entries(api: Api, query: str = "") -> list[dict[str, Any]]:
    resp = await api.client.get(f"{AUDIT}{query}", headers=auth("admin", user="auditor"))
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["entries"])


async def test_every_action_is_recorded(api: Api) -> None:
    admin = auth("admin", tenant="ops", user="alice")
    await api.enqueue(payment())  # waiting on the paused money queue: the clear cancels it
    dead = await api.enqueue({**email(), "type": "send-push",
                              "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(dead, "failed")
    calls = [
        ("post", f"{Q}/communication/pause", None, "queue.pause", "communication"),
        ("post", f"{Q}/communication/resume", None, "queue.resume", "communication"),
        ("post", f"{Q}/money/clear", None, "queue.clear", "money"),
        ("post", f"{JOBS}/{dead}/retry", None, "job.retry", dead),
        ("delete", f"{JOBS}/{dead}", None, "job.cancel", dead),
        ("post", "/api/v1/queue/dlq/retry", {"jobIds": ["nope"]}, "dlq.retry", "nope"),
        ("post", f"{RL}/reset/stripe", None, "rate_limit.reset", "stripe"),
        ("post", f"{RL}/emergency-stop", {"service": "stripe"}, "emergency.stop", "stripe"),
        ("post", f"{RL}/resume", None, "emergency.resume", "*"),
    ]
    for method, path, body, _, _ in calls:
        resp = await getattr(api.client, method)(path, json=body,
                                                 headers={**admin, "X-Request-ID": path[-20:]})
        assert resp.status < 500, await resp.text()
    got = await entries(api)
    assert [e["action"] for e in got] == [c[3] for c in reversed(calls)]
    for entry, (_, path, _, _, target) in zip(reversed(got), calls, strict=True):
        assert entry["target"] == target, entry
        assert (entry["userId"], entry["role"], entry["tenantId"]) == ("alice", "admin", "ops")
        assert entry["requestId"] == path[-20:]
        assert entry["at"].endswith("Z")
    by_action = {e["action"]: e for e in got}
    assert by_action["queue.clear"]["details"]["cancelled"] == 1
    # the job was retried, so it is waiting or running: a cancel of it may succeed or conflict
    assert by_action["job.cancel"]["outcome"] in ("ok", "failed")
    assert by_action["dlq.retry"]["details"] == {"requested": 1, "retried": 0}


async def test_refusals_and_failures_are_recorded(api: Api) -> None:
    resp = await api.client.post(f"{Q}/money/pause", headers=auth("user", user="mallory"))
    assert resp.status == 403
    resp = await api.client.post(f"{Q}/nosuch/pause", headers=auth("admin"))
    assert resp.status == 404
    got = await entries(api, "?action=queue.pause&limit=5")
    assert [(e["outcome"], e["code"], e["userId"]) for e in got] == [
        ("failed", "queue_not_found", "u1"), ("denied", "forbidden", "mallory")]


async def test_only_admins_read_the_trail(api: Api) -> None:
    for role in ("user", "venue_admin", "monitoring", "service"):
        resp = await api.client.get(AUDIT, headers=auth(role))
        assert resp.status == 403
    assert (await api.client.get(AUDIT)).status == 401
    resp = await api.client.get(f"{AUDIT}?limit=0", headers=auth("admin"))
    assert resp.status == 400
    resp = await api.client.get(f"{AUDIT}?action=drop", headers=auth("admin"))
    assert resp.status == 400


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    env = {"TICKQ_DATA_DIR": str(tmp_path), "TICKQ_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    async with serve_api(env) as first:
        for name in ("communication", "money"):
            resp = await first.client.post(f"{Q}/{name}/resume", headers=auth("admin"))
            assert resp.status == 200
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 2
    async with serve_api(env) as second:
        got = await entries(second)
    assert [e["target"] for e in got] == ["money", "communication"]
