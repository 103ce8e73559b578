"""The dead-letter queue: GET /dlq (history, scope, cursor paging) and POST /dlq/retry (roles,
validation, per-id results, and a retried job that then completes)."""

from __future__ import annotations

from typing import Any

import pytest
from httpkit import Api, auth, email

DLQ = "/api/v1/queue/dlq"


def push(user: str = "u1", title: str = "Doors open") -> dict[str, Any]:
    return {"queue": "communication", "type": "send-push",
            "data": {"userId": user, "title": title, "body": "See you soon"}}


async def dead(api: Api, **who: Any) -> str:
    """A job in the dead-letter queue (send-push fails permanently)."""
    title = who.pop("title", "Doors open")
    job_id = await api.enqueue(push(user=who.get("user", "u1"), title=title), **who)
    await api.wait_state(job_id, "failed")
    return job_id


async def retry(api: Api, body: Any, status: int = 200, **who: Any) -> Any:
    resp = await api.client.post(f"{DLQ}/retry", json=body, headers=auth(**who))
    assert resp.status == status, await resp.text()
    return await resp.json()


# --- GET /dlq ---------------------------------------------------------------------------------


async def test_dlq_lists_failed_jobs_with_their_error_history(api: Api) -> None:
    failed = await dead(api)
    await api.wait_state(await api.enqueue(email()), "completed")
    resp = await api.client.get(DLQ, headers=auth())
    assert resp.status == 200
    out = await resp.json()
    assert ([j["id"] for j in out["jobs"]], out["count"], out["nextCursor"]) == (
        [failed], 1, None)
    job = out["jobs"][0]
    assert (job["state"], job["failedReason"]) == (
        "failed", "push provider refused the device token")
    [error] = job["errors"]
    assert (error["attempt"], error["message"]) == (1, "push provider refused the device token")
    assert error["at"].endswith("Z")


async def test_dlq_is_scoped_to_the_callers_tenant(api: Api) -> None:
    theirs = await dead(api, tenant="t2", user="u9", role="user")
    mine = await dead(api, title="mine")
    for who in ({"role": "user"}, {"role": "venue_admin"}, {"role": "monitoring"}):
        out = await (await api.client.get(DLQ, headers=auth(**who))).json()
        assert theirs not in [j["id"] for j in out["jobs"]], who
    out = await (await api.client.get(DLQ, headers=auth(role="user"))).json()
    assert [j["id"] for j in out["jobs"]] == [mine]
    out = await (await api.client.get(DLQ, headers=auth(tenant="t0"))).json()  # admin
    assert {j["id"] for j in out["jobs"]} == {theirs, mine}


async def test_dlq_pages_with_a_cursor(api: Api) -> None:
    ids = [await dead(api, title=f"t{i}") for i in range(3)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params = {"limit": "2", **({"after": cursor} if cursor else {})}
        out = await (await api.client.get(DLQ, params=params, headers=auth())).json()
        seen += [j["id"] for j in out["jobs"]]
        cursor = out["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


async def test_dlq_filters_by_queue_and_validates_its_query(api: Api) -> None:
    await dead(api)
    out = await (await api.client.get(DLQ, params={"queue": "money"}, headers=auth())).json()
    assert out["jobs"] == []
    resp = await api.client.get(DLQ, params={"queue": "nope"}, headers=auth())
    assert resp.status == 404
    for bad in ({"limit": "0"}, {"limit": "101"}, {"after": "../x"}):
        assert (await api.client.get(DLQ, params=bad, headers=auth())).status == 400, bad
    assert (await api.client.get(DLQ)).status == 401


# --- POST /dlq/retry --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "monitoring", "service"])
async def test_retry_needs_admin_or_venue_admin(api: Api, role: str) -> None:
    job_id = await dead(api)
    out = await retry(api, {"jobIds": [job_id]}, 403, role=role)
    assert out["code"] == "forbidden"
    assert (await api.engine.get(job_id)).state.value == "failed"  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [{}, {"jobIds": []}, {"jobIds": [f"j{i}" for i in range(101)]},
                                  {"jobIds": ["a", "a"]}, {"jobIds": "a"}, {"jobIds": [1]},
                                  {"jobIds": ["a"], "extra": 1}])
async def test_retry_validates_its_body(api: Api, body: Any) -> None:
    out = await retry(api, body, 400)
    assert out["error"] == "Bad Request"


async def test_retry_puts_a_failed_job_back_and_it_completes(api: Api) -> None:
    job_id = await dead(api)
    api.engine.register("send-push", lambda job: {"delivered": True})  # the provider recovered
    out = await retry(api, {"jobIds": [job_id]}, role="venue_admin")
    assert out["total"] == 1 and out["retried"] == 1 and out["failed"] == 0
    [result] = out["results"]
    assert (result["jobId"], result["status"], result["queue"]) == (
        job_id, "retrying", "communication")
    assert result["maxAttempts"] > result["attempts"]
    job = await api.wait_state(job_id, "completed")
    assert job.result == {"delivered": True} and len(job.errors) == 1  # history kept
    listed = await (await api.client.get(DLQ, headers=auth())).json()
    assert listed["jobs"] == []


async def test_retry_reports_each_id(api: Api) -> None:
    failed = await dead(api)
    done = await api.enqueue(email())
    await api.wait_state(done, "completed")
    theirs = await dead(api, tenant="t2", user="u9", role="user", title="theirs")
    out = await retry(api, {"jobIds": [failed, done, "no-such-job", theirs]},
                      role="venue_admin")
    assert (out["total"], out["retried"], out["failed"]) == (4, 1, 3)
    by_id = {r["jobId"]: r for r in out["results"]}
    assert [r["jobId"] for r in out["results"]] == [failed, done, "no-such-job", theirs]
    assert by_id[failed]["status"] == "retrying"
    assert (by_id[done]["code"], by_id[done]["httpStatus"]) == ("illegal_transition", 409)
    for hidden in ("no-such-job", theirs):  # another tenant's job looks like no job at all
        assert (by_id[hidden]["code"], by_id[hidden]["httpStatus"]) == ("job_not_found", 404)
        assert "t2" not in by_id[hidden]["message"]
    assert (await api.engine.get(theirs)).state.value == "failed"  # type: ignore[union-attr]


# --- DELETE /dlq/{id} ---------------------------------------------------------------------------


async def test_discard_deletes_a_dead_letter_job_for_good(api: Api) -> None:
    failed = await dead(api)
    resp = await api.client.delete(f"{DLQ}/{failed}", headers=auth())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "discarded"
    gone = await api.client.get(f"/api/v1/queue/jobs/{failed}", headers=auth())
    assert gone.status == 404
    listed = await (await api.client.get(DLQ, headers=auth())).json()
    assert failed not in [j["id"] for j in listed["jobs"]]


async def test_discard_refuses_users_other_tenants_and_live_jobs(api: Api) -> None:
    failed = await dead(api)
    denied = await api.client.delete(f"{DLQ}/{failed}", headers=auth(role="user"))
    assert (denied.status, (await denied.json())["code"]) == (403, "forbidden")
    theirs = await dead(api, tenant="t2", user="u9", role="user", title="theirs")
    hidden = await api.client.delete(f"{DLQ}/{theirs}",
                                     headers=auth(role="venue_admin"))
    assert (hidden.status, (await hidden.json())["code"]) == (404, "job_not_found")
    done = await api.enqueue(email())
    await api.wait_state(done, "completed")
    live = await api.client.delete(f"{DLQ}/{done}", headers=auth())
    assert (live.status, (await live.json())["code"]) == (409, "illegal_transition")
    still = await api.client.get(f"/api/v1/queue/jobs/{failed}", headers=auth())
    assert still.status == 200
