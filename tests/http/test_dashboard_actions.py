"""Dashboard actions: each does what its API route does, and is audited the same way."""

from __future__ import annotations

import asyncio
from typing import Any

from dashkit import DASH, post, sign_in
from httpkit import Api, auth, email

from tickq.storage.base import JobQuery, NewAlert


def push() -> dict[str, Any]:
    """A push message: it fails permanently, straight to the dead-letter queue."""
    return {"queue": "communication", "type": "send-push",
            "data": {"userId": "u1", "title": "t", "body": "b"}}


async def audit(api: Api, action: str) -> list[tuple[str, str]]:
    resp = await api.client.get(f"/api/v1/queue/audit?action={action}", headers=auth())
    return [(e["target"], e["outcome"]) for e in (await resp.json())["entries"]]


async def test_retrying_dead_letter_jobs_runs_them_again(api: Api) -> None:
    ids = [await api.enqueue(push()) for _ in range(2)]
    for job_id in ids:
        await api.wait_state(job_id, "failed")
    api.engine.register("send-push", lambda job: {"delivered": True})  # the provider is back
    csrf = await sign_in(api)
    resp = await post(api, "/dlq/retry", csrf, job=ids)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/dlq?done=retried&n=2"
    for job_id in ids:
        job = await api.wait_state(job_id, "completed")
        assert len(job.errors) == 1  # the history is kept
    page = await (await api.client.get(resp.headers["Location"])).text()
    assert "Jobs put back to waiting: 2." in page
    assert await audit(api, "dlq.retry") == [(",".join(ids), "ok")]


async def test_retrying_nothing_or_a_job_that_is_not_failed_says_so(api: Api) -> None:
    csrf = await sign_in(api)
    resp = await post(api, "/dlq/retry", csrf)
    assert resp.headers["Location"] == "/dashboard/dlq?done=nothing"
    waiting = await api.enqueue({"queue": "money", "type": "payment-process", "data": {
        "userId": "u1", "venueId": "v1", "eventId": "e1", "amount": 5,
        "paymentMethod": "pm_card_visa"}})
    resp = await post(api, "/dlq/retry", csrf, job=[waiting, "missing"])
    assert resp.headers["Location"] == "/dashboard/dlq?done=retry-failed&n=2"
    assert (await api.engine.get(waiting)).state.value == "waiting"  # type: ignore[union-attr]


async def test_discarding_asks_first_then_deletes(api: Api) -> None:
    job_id = await api.enqueue(push())
    await api.wait_state(job_id, "failed")
    csrf = await sign_in(api)
    confirm = await post(api, "/dlq/discard/confirm", csrf, job=job_id)
    text = await confirm.text()
    assert confirm.status == 200 and "Discard dead-letter jobs" in text
    assert f'name="job" value="{job_id}"' in text and 'action="/dashboard/dlq/discard"' in text
    assert await api.engine.get(job_id) is not None  # asking changes nothing
    resp = await post(api, "/dlq/discard", csrf, job=job_id)
    assert resp.headers["Location"] == "/dashboard/dlq?done=discarded&n=1"
    assert await api.engine.get(job_id) is None
    assert await audit(api, "dlq.discard") == [(job_id, "ok")]


async def test_a_tenant_cannot_retry_or_discard_another_tenants_job(api: Api) -> None:
    theirs = await api.enqueue(push(), tenant="t2")
    await api.wait_state(theirs, "failed")
    csrf = await sign_in(api, "venue_admin", tenant="t1")
    resp = await post(api, "/dlq/retry", csrf, job=theirs)
    assert resp.headers["Location"] == "/dashboard/dlq?done=retry-failed&n=1"
    resp = await post(api, "/dlq/discard", csrf, job=theirs)
    assert resp.headers["Location"] == "/dashboard/dlq?done=discarded&n=0"
    assert (await api.engine.get(theirs)).state.value == "failed"  # type: ignore[union-attr]
    dlq = await (await api.client.get(f"{DASH}/dlq")).text()
    assert theirs not in dlq


async def test_emergency_stop_defers_a_providers_jobs_until_resumed(api: Api) -> None:
    csrf = await sign_in(api)
    confirm = await post(api, "/limits/stop/confirm", csrf, service="sendgrid")
    assert confirm.status == 200 and "sendgrid" in await confirm.text()
    assert not api.engine.providers.limiter.status("sendgrid", 0)["stopped"]
    resp = await post(api, "/limits/stop", csrf, service="sendgrid")
    assert resp.headers["Location"] == "/dashboard/limits?done=stopped"
    job_id = await api.enqueue(email())
    await asyncio.sleep(0.3)
    job = await api.engine.get(job_id)
    assert job is not None and (job.state.value, job.attempts) == ("waiting", 0)
    limits = await (await api.client.get(f"{DASH}/limits")).text()
    row = limits.split('data-provider="sendgrid"')[1].split("</tr>")[0]
    assert "STOPPED" in row and "Resume…" in row
    resp = await post(api, "/limits/resume", csrf, service="sendgrid")
    assert resp.headers["Location"] == "/dashboard/limits?done=resumed"
    await api.wait_state(job_id, "completed")
    assert await audit(api, "emergency.stop") == [("sendgrid", "ok")]
    assert await audit(api, "emergency.resume") == [("sendgrid", "ok")]


async def test_stopping_everything_and_unknown_providers(api: Api) -> None:
    csrf = await sign_in(api)
    resp = await post(api, "/limits/stop", csrf, service="")
    assert resp.status == 303
    status = api.engine.providers.limiter.status("stripe", 0)
    assert status["stopped"]
    resp = await post(api, "/limits/resume", csrf)
    assert not api.engine.providers.limiter.status("stripe", 0)["stopped"]
    unknown = await post(api, "/limits/stop", csrf, service="nope")
    assert unknown.status == 404 and (await unknown.json())["code"] == "service_not_found"
    reset = await post(api, "/limits/stripe/reset", csrf)
    assert reset.headers["Location"] == "/dashboard/limits?done=reset"
    assert await audit(api, "rate_limit.reset") == [("stripe", "ok")]


async def test_acknowledging_an_alert(api: Api) -> None:
    alert = await api.engine.store.alert_insert(NewAlert(
        severity="warning", alert_type="queue_depth", message="deep", queue_name="money",
        metric_value=60.0, threshold_value=50.0, created_at=api.engine.clock.now()))
    csrf = await sign_in(api, user="ops-1")
    resp = await post(api, f"/alerts/{alert.id}/acknowledge", csrf)
    assert resp.headers["Location"] == "/dashboard/alerts?done=acknowledged"
    stored = await api.engine.store.alert_get(alert.id)
    assert stored is not None and stored.acknowledged and stored.acknowledged_by == "ops-1"
    page = await (await api.client.get(f"{DASH}/alerts")).text()
    assert "by ops-1" in page
    missing = await post(api, "/alerts/999/acknowledge", csrf)
    assert missing.status == 404
    assert await audit(api, "alert.acknowledge") == [("999", "failed"), (str(alert.id), "ok")]


async def make_digest(api: Api) -> None:
    """A daily schedule named `digest`, made through the API."""
    made = await api.client.post("/api/v1/queue/schedules", json={
        "name": "digest", "cron": "0 9 * * *",
        "job": {"queue": "communication", "type": "send-email",
                "data": {"to": "ops@example.com", "template": "digest"}}}, headers=auth())
    assert made.status == 201, await made.text()


async def test_running_a_schedule_now_enqueues_its_job_once(api: Api) -> None:
    await make_digest(api)
    csrf = await sign_in(api)
    resp = await post(api, "/schedules/digest/run", csrf)
    assert resp.headers["Location"] == "/dashboard/schedules?done=ran"
    again = await post(api, "/schedules/digest/run", csrf)
    assert again.status == 303
    jobs = await api.engine.list_jobs(JobQuery(type="send-email"))
    assert len(jobs) in (1, 2)  # once per second: a double click within it enqueues one
    assert all(j.tenant_id == "t1" and j.idempotency_key.startswith("schedule:digest:now:")
               for j in jobs if j.idempotency_key)
    await api.wait_state(jobs[0].id, "completed")
    missing = await post(api, "/schedules/nope/run", csrf)
    assert missing.status == 404
    assert (await audit(api, "schedule.run"))[-1] == ("digest", "ok")


async def test_pausing_and_resuming_a_schedule(api: Api) -> None:
    await make_digest(api)
    csrf = await sign_in(api)
    resp = await post(api, "/schedules/digest/pause", csrf)
    assert resp.headers["Location"] == "/dashboard/schedules?done=schedule-paused"
    stored = await api.engine.store.schedule_get("digest")
    assert stored is not None and stored.paused
    page = await (await api.client.get(f"{DASH}/schedules")).text()
    assert 'action="/dashboard/schedules/digest/resume"' in page
    assert '<td class="paused">yes</td>' in page
    resp = await post(api, "/schedules/digest/resume", csrf)
    assert resp.headers["Location"] == "/dashboard/schedules?done=schedule-resumed"
    stored = await api.engine.store.schedule_get("digest")
    assert stored is not None and not stored.paused
    assert await audit(api, "schedule.pause") == [("digest", "ok")]
    assert await audit(api, "schedule.resume") == [("digest", "ok")]


async def test_pausing_and_resuming_a_queue(api: Api) -> None:
    csrf = await sign_in(api)
    resp = await post(api, "/queues/communication/pause", csrf)
    assert resp.headers["Location"] == "/dashboard?done=paused"
    assert api.engine.is_paused("communication")
    resp = await post(api, "/queues/communication-queue/resume", csrf)
    assert resp.headers["Location"] == "/dashboard?done=queue-resumed"
    assert not api.engine.is_paused("communication")
    assert await audit(api, "queue.pause") == [("communication", "ok")]
