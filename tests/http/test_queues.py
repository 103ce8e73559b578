"""Queue management (GET /queues, status, pause, resume, clear, paginated jobs) and the spec's
health routes under /api/v1/queue: shapes, status codes, roles and real effects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpkit import Api, auth, email, payment

QUEUES = "/api/v1/queue/queues"
SMS = {"queue": "communication", "type": "send-sms",
       "data": {"to": "+15550100", "message": "hello"}}
PUSH = {"queue": "communication", "type": "send-push",
        "data": {"userId": "u1", "title": "Doors open", "body": "See you soon"}}


def later(body: dict[str, Any], ms: int = 600_000) -> dict[str, Any]:
    return {**body, "options": {"delay": ms}}


async def get_json(api: Api, path: str, status: int = 200, **who: Any) -> Any:
    resp = await api.client.get(path, headers=auth(**who))
    assert resp.status == status, await resp.text()
    return await resp.json()


# --- GET /queues and GET /queues/{name}/status ------------------------------------------------


async def test_list_queues_shows_real_counts(api: Api) -> None:
    await api.enqueue(payment())
    await api.enqueue(later(payment(amount=5)))
    await api.wait_state(await api.enqueue(email()), "completed")
    out = await get_json(api, QUEUES, role="user")
    assert [q["name"] for q in out] == ["money", "communication", "background"]
    money, comm, _ = out
    assert (money["waiting"], money["delayed"], money["active"], money["paused"]) == (
        1, 1, 0, True)
    assert (comm["completed"], comm["failed"], comm["cancelled"], comm["paused"]) == (
        1, 0, 0, False)


async def test_queue_routes_need_a_token(api: Api) -> None:
    for path in (QUEUES, f"{QUEUES}/money/status", f"{QUEUES}/money/jobs?status=waiting"):
        assert (await api.client.get(path)).status == 401


async def test_status_has_metrics_and_samples(api: Api) -> None:
    waiting = await api.enqueue(payment())
    failed = await api.enqueue(PUSH)
    await api.wait_state(failed, "failed")
    money = await get_json(api, f"{QUEUES}/money-queue/status")
    assert money["name"] == "money" and money["metrics"]["waiting"] == 1
    assert [s["id"] for s in money["samples"]["waiting"]] == [waiting]
    assert money["samples"]["waiting"][0]["createdAt"].endswith("Z")
    comm = await get_json(api, f"{QUEUES}/communication/status")
    [sample] = comm["samples"]["failed"]
    assert (sample["id"], sample["type"]) == (failed, "send-push")
    assert sample["reason"] == "push provider refused the device token"


async def test_status_samples_stay_in_the_callers_scope(api: Api) -> None:
    await api.enqueue(payment(user="u9"), tenant="t2", user="u9", role="user")
    out = await get_json(api, f"{QUEUES}/money/status", role="user")
    assert out["metrics"]["waiting"] == 1  # counts describe load, across tenants
    assert out["samples"]["waiting"] == []


@pytest.mark.parametrize("path", [f"{QUEUES}/nope/status", f"{QUEUES}/nope/jobs?status=failed"])
async def test_unknown_queue_is_404(api: Api, path: str) -> None:
    out = await get_json(api, path, status=404)
    assert (out["error"], out["code"]) == ("Not Found", "queue_not_found")
    assert "known queues" in out["message"] and "requestId" in out


# --- pause / resume ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["pause", "resume", "clear"])
@pytest.mark.parametrize("role", ["user", "venue_admin", "monitoring", "service"])
async def test_queue_actions_are_admin_only(api: Api, action: str, role: str) -> None:
    resp = await api.client.post(f"{QUEUES}/communication/{action}", headers=auth(role=role))
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"
    assert not api.engine.is_paused("communication")


async def test_pause_holds_jobs_and_resume_runs_them(api: Api) -> None:
    resp = await api.client.post(f"{QUEUES}/communication-queue/pause", headers=auth())
    assert resp.status == 200
    assert await resp.json() == {"queue": "communication", "status": "paused",
                                 "message": "Queue has been paused"}
    job_id = await api.enqueue(email())
    await asyncio.sleep(0.2)
    assert (await api.engine.get(job_id)).state.value == "waiting"  # type: ignore[union-attr]
    status = await get_json(api, f"{QUEUES}/communication/status")
    assert status["paused"] is True and status["metrics"]["waiting"] == 1
    resp = await api.client.post(f"{QUEUES}/communication/resume", headers=auth())
    assert resp.status == 200
    assert (await resp.json())["status"] == "active"
    await api.wait_state(job_id, "completed")


async def test_pause_unknown_queue_is_404(api: Api) -> None:
    resp = await api.client.post(f"{QUEUES}/nope/pause", headers=auth())
    assert resp.status == 404 and (await resp.json())["code"] == "queue_not_found"


# --- clear ------------------------------------------------------------------------------------


async def test_clear_cancels_only_jobs_that_have_not_started(api: Api) -> None:
    done = await api.enqueue(email())
    await api.wait_state(done, "completed")
    running = await api.enqueue(SMS)
    await api.wait_state(running, "active")
    delayed = [await api.enqueue(later(email(to=f"f{i}@example.com"))) for i in range(3)]
    resp = await api.client.post(f"{QUEUES}/communication/clear", headers=auth())
    assert resp.status == 200
    out = await resp.json()
    assert (out["queue"], out["cancelled"], out["action"]) == (
        "communication", 3, "cancelled waiting")
    for job_id in delayed:
        assert (await api.engine.get(job_id)).state.value == "cancelled"  # type: ignore[union-attr]
    assert (await api.engine.get(running)).state.value == "active"  # type: ignore[union-attr]
    assert (await api.engine.get(done)).state.value == "completed"  # type: ignore[union-attr]
    assert not api.engine.is_paused("communication")  # put back as it was
    await api.wait_state(await api.enqueue(email(to="after@example.com")), "completed")
    await api.engine.cancel(running)  # a hanging job would hold the shutdown for its grace
    await api.wait_state(running, "cancelled")


async def test_clear_delayed_keeps_ready_jobs_and_a_paused_queue_stays_paused(api: Api) -> None:
    ready = await api.enqueue(payment())
    delayed = await api.enqueue(later(payment(amount=5)))
    resp = await api.client.post(f"{QUEUES}/money/clear", params={"type": "delayed"},
                                 headers=auth())
    assert resp.status == 200 and (await resp.json())["cancelled"] == 1
    assert (await api.engine.get(ready)).state.value == "waiting"  # type: ignore[union-attr]
    assert (await api.engine.get(delayed)).state.value == "cancelled"  # type: ignore[union-attr]
    assert (await get_json(api, f"{QUEUES}/money/status"))["paused"] is True


@pytest.mark.parametrize("kind", ["completed", "failed", "everything"])
async def test_clear_refuses_finished_job_types(api: Api, kind: str) -> None:
    resp = await api.client.post(f"{QUEUES}/money/clear", params={"type": kind}, headers=auth())
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == "type"


# --- GET /queues/{name}/jobs ------------------------------------------------------------------


async def test_queue_jobs_pages_by_offset_oldest_first(api: Api) -> None:
    ids = [await api.enqueue(payment(amount=100 + i)) for i in range(3)]
    first = await get_json(api, f"{QUEUES}/money/jobs?status=waiting&start=0&end=2")
    assert (first["queue"], first["status"], first["count"], first["hasMore"]) == (
        "money", "waiting", 2, True)
    assert [j["id"] for j in first["jobs"]] == ids[:2]
    job = first["jobs"][0]
    assert (job["type"], job["attempts"], job["progress"], job["processedAt"],
            job["failedReason"]) == ("payment-process", 0, 0, None, None)
    assert job["data"]["amount"] == 100
    rest = await get_json(api, f"{QUEUES}/money/jobs?status=waiting&start=2&end=4")
    assert ([j["id"] for j in rest["jobs"]], rest["hasMore"]) == (ids[2:], False)


async def test_queue_jobs_failed_shows_reason_and_delayed_is_its_own_status(api: Api) -> None:
    failed = await api.enqueue(PUSH)
    await api.wait_state(failed, "failed")
    delayed = await api.enqueue(later(email()))
    out = await get_json(api, f"{QUEUES}/communication/jobs?status=failed")
    assert [j["id"] for j in out["jobs"]] == [failed]
    assert out["jobs"][0]["failedReason"] == "push provider refused the device token"
    out = await get_json(api, f"{QUEUES}/communication/jobs?status=delayed")
    assert [j["id"] for j in out["jobs"]] == [delayed]


async def test_queue_jobs_are_scoped_to_the_caller(api: Api) -> None:
    await api.enqueue(payment(user="u9"), tenant="t2", user="u9", role="user")
    mine = await api.enqueue(payment())
    out = await get_json(api, f"{QUEUES}/money/jobs?status=waiting", role="user")
    assert [j["id"] for j in out["jobs"]] == [mine]
    out = await get_json(api, f"{QUEUES}/money/jobs?status=waiting", role="admin", tenant="t3")
    assert out["count"] == 2


@pytest.mark.parametrize("query", ["", "status=bogus", "status=waiting&start=5&end=5",
                                   "status=waiting&start=0&end=101", "status=waiting&start=-1",
                                   "status=waiting&end=x"])
async def test_queue_jobs_validates_its_query(api: Api, query: str) -> None:
    out = await get_json(api, f"{QUEUES}/money/jobs?{query}", status=400)
    assert out["error"] == "Bad Request"


# --- the spec's health routes -----------------------------------------------------------------


async def test_spec_health_routes_are_public_and_shaped_as_the_spec(api: Api) -> None:
    resp = await api.client.get("/api/v1/queue/health")
    assert resp.status == 200
    out = await resp.json()
    assert out["status"] == "healthy"
    assert out["checks"] == {"service": "healthy", "database": "healthy"}
    assert out["timestamp"].endswith("Z")
    resp = await api.client.get("/api/v1/queue/health/ready")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_spec_health_reports_a_failing_store(api: Api,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> bool:
        raise ConnectionError("disk gone")

    monkeypatch.setattr(api.engine.store, "ping", down)
    resp = await api.client.get("/api/v1/queue/health")
    assert resp.status == 503
    out = await resp.json()
    assert (out["status"], out["checks"]["database"]) == ("unhealthy", "unhealthy")
    assert "disk gone" in out["problems"]["database"]
    resp = await api.client.get("/api/v1/queue/health/ready")
    assert resp.status == 503 and (await resp.json())["status"] == "not_ready"
    assert (await api.client.get("/health/ready")).status == 503  # the same checks
