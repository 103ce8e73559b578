"""GET /jobs/{id}, GET /jobs, POST /jobs/{id}/retry and DELETE /jobs/{id}: shapes, pagination,
state rules and who may see what."""

from __future__ import annotations

from typing import Any

import pytest
from httpkit import JOBS, Api, auth, email, payment

PUSH = {"queue": "communication", "type": "send-push",
        "data": {"userId": "u1", "title": "Doors open", "body": "See you soon"}}
SMS = {"queue": "communication", "type": "send-sms",
       "data": {"to": "+15550100", "message": "hello"}}


# --- GET /jobs/{id} --------------------------------------------------------------------------


async def test_get_job_renders_the_spec_fields_with_real_values(api: Api) -> None:
    job_id = await api.enqueue(email())
    await api.wait_state(job_id, "completed")
    resp = await api.client.get(f"{JOBS}/{job_id}", headers=auth())
    assert resp.status == 200
    out = await resp.json()
    assert (out["id"], out["queue"], out["type"], out["state"]) == (
        job_id, "communication", "send-email", "completed")
    assert (out["progress"], out["attempts"], out["result"]) == (100, 1, {"sent": True})
    for field in ("createdAt", "processedAt", "finishedAt", "runAt"):
        assert out[field].endswith("Z") and "T" in out[field], field
    assert out["createdAt"] <= out["processedAt"] <= out["finishedAt"]
    assert out["data"]["to"] == "fan@example.com"
    assert (out["tenantId"], out["userId"], out["failedReason"]) == ("t1", "u1", None)
    assert "idempotencyKey" not in out and "idempotency_key" not in out


async def test_get_job_accepts_the_spec_queue_parameter(api: Api) -> None:
    job_id = await api.enqueue(payment())
    for queue in ("money", "money-queue"):
        resp = await api.client.get(f"{JOBS}/{job_id}", params={"queue": queue}, headers=auth())
        assert resp.status == 200
    resp = await api.client.get(f"{JOBS}/{job_id}", params={"queue": "background"},
                                headers=auth())
    assert resp.status == 404


@pytest.mark.parametrize("job_id", ["no-such-job", "x" * 500, "01a2%2F..%2Fetc"])
async def test_get_unknown_job_is_404(api: Api, job_id: str) -> None:
    resp = await api.client.get(f"{JOBS}/{job_id}", headers=auth())
    assert resp.status == 404
    out = await resp.json()
    assert out["code"] == "job_not_found" and out["error"] == "Not Found"


async def test_a_failed_job_shows_why(api: Api) -> None:
    job_id = await api.enqueue(PUSH)
    await api.wait_state(job_id, "failed")
    out = await (await api.client.get(f"{JOBS}/{job_id}", headers=auth())).json()
    assert out["state"] == "failed"
    assert out["failedReason"] == "push provider refused the device token"
    assert out["errors"][0]["attempt"] == 1 and out["errors"][0]["at"].endswith("Z")


# --- tenant isolation and scopes -------------------------------------------------------------


async def test_another_tenants_job_is_not_found_for_every_action(api: Api) -> None:
    job_id = await api.enqueue(PUSH, tenant="tenant-b")
    await api.wait_state(job_id, "failed")
    other = auth("venue_admin", tenant="tenant-a")
    for resp in (await api.client.get(f"{JOBS}/{job_id}", headers=other),
                 await api.client.post(f"{JOBS}/{job_id}/retry", headers=other),
                 await api.client.delete(f"{JOBS}/{job_id}", headers=other)):
        assert resp.status == 404
        assert (await resp.json())["code"] == "job_not_found"
    job = await api.engine.get(job_id)
    assert job is not None and job.state.value == "failed"  # untouched
    listing = await (await api.client.get(JOBS, headers=other)).json()
    assert listing["jobs"] == []
    # an admin acts across tenants
    assert (await api.client.get(f"{JOBS}/{job_id}", headers=auth(tenant="t-admin"))).status == 200


async def test_a_user_sees_only_their_own_jobs(api: Api) -> None:
    mine = await api.enqueue(payment(user="alice"), role="user", user="alice")
    theirs = await api.enqueue(payment(user="bob"), role="user", user="bob")
    alice = auth("user", user="alice")
    assert (await api.client.get(f"{JOBS}/{mine}", headers=alice)).status == 200
    assert (await api.client.get(f"{JOBS}/{theirs}", headers=alice)).status == 404
    listing = await (await api.client.get(JOBS, headers=alice)).json()
    assert [j["id"] for j in listing["jobs"]] == [mine]


async def test_a_venue_admin_sees_only_their_venues(api: Api) -> None:
    v1 = await api.enqueue(payment(venue="v1"))
    v2 = await api.enqueue(payment(venue="v2"))
    tenant_wide = await api.enqueue(email())
    admin_v1 = auth("venue_admin", venues=["v1"])
    assert (await api.client.get(f"{JOBS}/{v2}", headers=admin_v1)).status == 404
    assert (await api.client.delete(f"{JOBS}/{v2}", headers=admin_v1)).status == 404
    listing = await (await api.client.get(JOBS, headers=admin_v1)).json()
    assert {j["id"] for j in listing["jobs"]} == {v1, tenant_wide}


async def test_only_admins_list_another_tenant(api: Api) -> None:
    await api.enqueue(payment(), tenant="t2")
    resp = await api.client.get(JOBS, params={"tenant": "t2"}, headers=auth("service"))
    assert resp.status == 403
    resp = await api.client.get(JOBS, params={"tenant": "t2"}, headers=auth("admin"))
    assert resp.status == 200
    assert [j["tenantId"] for j in (await resp.json())["jobs"]] == ["t2"]


# --- listing ---------------------------------------------------------------------------------


async def test_listing_pages_with_a_cursor_newest_first(api: Api) -> None:
    ids = [await api.enqueue(payment(amount=100 + i)) for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["after"] = cursor
        out = await (await api.client.get(JOBS, params=params, headers=auth())).json()
        assert set(out) == {"jobs", "count", "limit", "nextCursor"}
        assert out["count"] == len(out["jobs"]) <= 3
        seen += [j["id"] for j in out["jobs"]]
        pages += 1
        cursor = out["nextCursor"]
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3


async def test_a_users_listing_pages_through_a_crowded_tenant(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from tickq.http import jobs

    monkeypatch.setattr(jobs, "SCAN_BATCH", 4)
    monkeypatch.setattr(jobs, "SCAN_ROUNDS", 2)
    mine = []
    for i in range(12):
        await api.enqueue(payment(user="bob", amount=500 + i), role="user", user="bob")
        if i % 4 == 0:
            mine.append(await api.enqueue(payment(user="al", amount=i + 1), role="user",
                                          user="al"))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(20):
        out = await (await api.client.get(JOBS, params=params, headers=auth("user", user="al"))
                     ).json()
        seen += [j["id"] for j in out["jobs"]]
        if out["nextCursor"] is None:
            break
        params["after"] = out["nextCursor"]
    assert seen == mine[::-1]


async def test_listing_filters(api: Api) -> None:
    pay = await api.enqueue(payment())
    mail = await api.enqueue(email())
    await api.wait_state(mail, "completed")

    async def ids(**params: str) -> list[str]:
        out = await (await api.client.get(JOBS, params=params, headers=auth())).json()
        return [j["id"] for j in out["jobs"]]

    assert await ids(queue="money") == [pay]
    assert await ids(state="completed") == [mail]
    assert set(await ids(state="waiting,completed")) == {pay, mail}
    assert await ids(type="send-email") == [mail]
    assert await ids(queue="background") == []


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"state": "sleeping"}, "state[0]"), ({"queue": "nope"}, "queue"),
    ({"after": "bad cursor!"}, "after"), ({"colour": "red"}, "colour"),
])
async def test_listing_refuses_bad_parameters(api: Api, params: dict[str, str],
                                              field: str) -> None:
    resp = await api.client.get(JOBS, params=params, headers=auth())
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == field


# --- retry -----------------------------------------------------------------------------------


async def test_retry_puts_a_dead_letter_job_back(api: Api) -> None:
    job_id = await api.enqueue(PUSH)
    await api.wait_state(job_id, "failed")
    resp = await api.client.post(f"{JOBS}/{job_id}/retry", json={"queue": "communication"},
                                 headers=auth("venue_admin"))
    assert resp.status == 200
    out = await resp.json()
    assert (out["jobId"], out["status"], out["message"]) == (
        job_id, "retrying", "Job has been queued for retry")
    job = await api.wait_state(job_id, "failed")  # it ran again, and failed again
    assert job.attempts == 2


async def test_retry_of_a_job_that_has_not_failed_is_a_conflict(api: Api) -> None:
    job_id = await api.enqueue(payment())
    resp = await api.client.post(f"{JOBS}/{job_id}/retry", headers=auth())
    assert resp.status == 409
    assert (await resp.json())["code"] == "illegal_transition"


async def test_retry_body_is_validated(api: Api) -> None:
    job_id = await api.enqueue(payment())
    resp = await api.client.post(f"{JOBS}/{job_id}/retry", json={"attempts": 99},
                                 headers=auth())
    assert resp.status == 400
    resp = await api.client.post(f"{JOBS}/{job_id}/retry", json={"queue": "background"},
                                 headers=auth())
    assert resp.status == 404


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_a_waiting_job(api: Api) -> None:
    job_id = await api.enqueue(payment())
    resp = await api.client.delete(f"{JOBS}/{job_id}", params={"queue": "money"},
                                   headers=auth())
    assert resp.status == 200
    assert await resp.json() == {"jobId": job_id, "status": "cancelled",
                                 "message": "Job has been cancelled"}
    await api.wait_state(job_id, "cancelled")
    again = await api.client.delete(f"{JOBS}/{job_id}", headers=auth())
    assert again.status == 409


async def test_cancel_a_running_job_is_accepted_and_stops_it(api: Api) -> None:
    job_id = await api.enqueue(SMS)
    await api.wait_state(job_id, "active")
    resp = await api.client.delete(f"{JOBS}/{job_id}", headers=auth())
    assert resp.status == 202
    assert (await resp.json())["status"] == "cancelling"
    await api.wait_state(job_id, "cancelled")


@pytest.mark.parametrize("role", ["user", "service", "monitoring"])
async def test_retry_and_cancel_need_admin_or_venue_admin(api: Api, role: str) -> None:
    job_id = await api.enqueue(payment(user="u1"), role="user", user="u1")
    for resp in (await api.client.post(f"{JOBS}/{job_id}/retry", headers=auth(role)),
                 await api.client.delete(f"{JOBS}/{job_id}", headers=auth(role))):
        assert resp.status == 403
        assert (await resp.json())["code"] == "forbidden"
