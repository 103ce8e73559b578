"""Cron schedules, one-off scheduled jobs and the maintenance listing over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from httpkit import Api, auth, serve_api

from tickq.clock import FakeClock
from tickq.http.schedules import SCHEDULER
from tickq.scheduling import SCHEDULES

SCHEDULES_URL = "/api/v1/queue/schedules"
ONE_OFF = "/api/v1/queue/jobs/schedule"
MAINTENANCE = "/api/v1/queue/maintenance"
#: Monday 5 January 2026, 08:00:00 UTC
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()


def digest(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "daily-digest", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris",
        "job": {"queue": "communication", "type": "send-email",
                "data": {"to": "ops@example.com", "template": "digest"},
                "options": {"priority": 7}},
        "missedTicks": "catch_up_once"}
    body.update(change)
    return body


async def test_a_schedule_is_made_listed_read_and_deleted(api: Api) -> None:
    client = api.client
    resp = await client.post(SCHEDULES_URL, json=digest(), headers=auth())
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert (made["name"], made["cron"], made["timezone"], made["missedTicks"]) == (
        "daily-digest", "0 9 * * 1-5", "Europe/Paris", "catch_up_once")
    assert made["job"] == digest()["job"]
    assert (made["tenantId"], made["userId"], made["pending"]) == ("t1", "u1", [])
    assert made["nextRunAt"].endswith(":00:00.000Z")

    listed = await (await client.get(SCHEDULES_URL, headers=auth())).json()
    assert listed["count"] == 1 and listed["schedules"] == [made]
    one = await client.get(f"{SCHEDULES_URL}/daily-digest", headers=auth())
    assert one.status == 200 and await one.json() == made

    again = await client.post(SCHEDULES_URL, json=digest(cron="*/5 * * * *"), headers=auth())
    assert again.status == 409 and (await again.json())["code"] == "schedule_exists"

    gone = await client.delete(f"{SCHEDULES_URL}/daily-digest", headers=auth())
    assert gone.status == 200 and await gone.json() == {"name": "daily-digest", "deleted": True}
    for resp in (await client.delete(f"{SCHEDULES_URL}/daily-digest", headers=auth()),
                 await client.get(f"{SCHEDULES_URL}/daily-digest", headers=auth())):
        assert resp.status == 404 and (await resp.json())["code"] == "schedule_not_found"


async def test_making_and_deleting_schedules_is_audited(api: Api) -> None:
    client = api.client
    assert (await client.post(SCHEDULES_URL, json=digest(), headers=auth())).status == 201
    assert (await client.delete(f"{SCHEDULES_URL}/daily-digest", headers=auth())).status == 200
    resp = await client.get("/api/v1/queue/audit?limit=10", headers=auth())
    entries = [(e["action"], e["target"], e["outcome"]) for e in (await resp.json())["entries"]]
    assert entries[:2] == [("schedule.delete", "daily-digest", "ok"),
                           ("schedule.create", "daily-digest", "ok")]


async def test_schedules_are_for_admins_only(api: Api) -> None:
    client = api.client
    assert (await client.get(SCHEDULES_URL)).status == 401
    for role in ("user", "venue_admin", "service", "monitoring"):
        resp = await client.post(SCHEDULES_URL, json=digest(), headers=auth(role))
        assert resp.status == 403, role
        assert (await client.get(SCHEDULES_URL, headers=auth(role))).status == 403
        assert (await client.delete(f"{SCHEDULES_URL}/x", headers=auth(role))).status == 403


async def test_a_schedule_is_paused_and_resumed_by_an_admin(api: Api) -> None:
    client = api.client
    assert (await client.post(SCHEDULES_URL, json=digest(), headers=auth())).status == 201
    for role in ("venue_admin", "monitoring"):
        refused = await client.post(f"{SCHEDULES_URL}/daily-digest/pause", headers=auth(role))
        assert refused.status == 403, role
    resp = await client.post(f"{SCHEDULES_URL}/daily-digest/pause", headers=auth())
    paused = await resp.json()
    assert resp.status == 200 and (paused["paused"], paused["nextRunAt"]) == (True, None)
    listed = await (await client.get(SCHEDULES_URL, headers=auth())).json()
    assert listed["schedules"][0]["paused"] is True
    resp = await client.post(f"{SCHEDULES_URL}/daily-digest/resume", headers=auth())
    resumed = await resp.json()
    assert resp.status == 200 and resumed["paused"] is False and resumed["nextRunAt"]
    missing = await client.post(f"{SCHEDULES_URL}/nope/pause", headers=auth())
    assert missing.status == 404 and (await missing.json())["code"] == "schedule_not_found"
    audit = await client.get("/api/v1/queue/audit?limit=10", headers=auth())
    entries = [(e["action"], e["target"], e["outcome"]) for e in (await audit.json())["entries"]]
    assert entries[:3] == [("schedule.pause", "nope", "failed"),
                           ("schedule.resume", "daily-digest", "ok"),
                           ("schedule.pause", "daily-digest", "ok")]


async def test_an_admin_runs_a_schedule_now_once_per_second(api: Api) -> None:
    client = api.client
    assert (await client.post(SCHEDULES_URL, json=digest(), headers=auth())).status == 201
    for role in ("venue_admin", "monitoring", "service"):
        refused = await client.post(f"{SCHEDULES_URL}/daily-digest/run", headers=auth(role))
        assert refused.status == 403, role
    resp = await client.post(f"{SCHEDULES_URL}/daily-digest/run", headers=auth())
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert (made["queue"], made["type"], made["options"]["priority"]) == (
        "communication", "send-email", 7)
    job = await api.engine.get(made["jobId"])
    assert job is not None and job.tenant_id == "t1"
    assert (job.data["to"], job.data["template"]) == ("ops@example.com", "digest")
    # a second click in the same second is the same job, not another email
    again = await client.post(f"{SCHEDULES_URL}/daily-digest/run", headers=auth())
    assert again.status == 200 and (await again.json())["jobId"] == made["jobId"]
    # its slots are untouched
    read = await (await client.get(f"{SCHEDULES_URL}/daily-digest", headers=auth())).json()
    assert read["lastJobId"] is None and read["pending"] == []
    missing = await client.post(f"{SCHEDULES_URL}/nope/run", headers=auth())
    assert missing.status == 404 and (await missing.json())["code"] == "schedule_not_found"


async def test_an_invalid_schedule_is_refused_with_field_errors(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        (digest(cron="0 25 * * *"), "cron", "invalid_cron"),
        (digest(cron="every day"), "cron", "invalid_cron"),
        (digest(timezone="Europe/Atlantis"), "timezone", "invalid_timezone"),
        (digest(missedTicks="sometimes"), "missedTicks", "literal_error"),
        (digest(name="no spaces"), "name", "string_pattern_mismatch"),
        (digest(job={"queue": "communication", "type": "no-such-type", "data": {}}),
         "job.type", "unknown_job_type"),
        (digest(job={"queue": "money", "type": "send-email",
                     "data": {"to": "ops@example.com", "template": "d"}}),
         "job.type", "queue_mismatch"),
        (digest(job={"queue": "communication", "type": "send-email",
                     "data": {"template": "d"}}), "job.data.to", "missing"),
        (digest(job={"queue": "communication", "type": "send-email", "data": {},
                     "options": {"priority": 11}}), "job.options.priority", "less_than_equal"),
    ]
    for body, field, code in cases:
        resp = await api.client.post(SCHEDULES_URL, json=body, headers=auth())
        out = await resp.json()
        assert resp.status == 400, (body, out)
        assert {"field": field, "code": code} in [
            {"field": d["field"], "code": d["code"]} for d in out["details"]], (body, out)
    listed = await (await api.client.get(SCHEDULES_URL, headers=auth())).json()
    assert listed["count"] == 0


async def test_a_schedules_slots_become_jobs_once_each() -> None:
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        await api.engine.pause("communication")
        resp = await api.client.post(SCHEDULES_URL, json=digest(cron="0 * * * *",
                                                               timezone="UTC"), headers=auth())
        assert resp.status == 201
        scheduler = api.client.app[SCHEDULER]
        clock.set(T0 + 3600 + 2)
        first = await scheduler.run_task(SCHEDULES)
        second = await scheduler.run_task(SCHEDULES)
        assert (first.counts["enqueued"], second.counts["enqueued"]) == (1, 0)

        made = await (await api.client.get(f"{SCHEDULES_URL}/daily-digest",
                                           headers=auth())).json()
        job = await (await api.client.get(f"/api/v1/queue/jobs/{made['lastJobId']}",
                                          headers=auth())).json()
        assert (job["type"], job["priority"], job["status"]) == ("send-email", 7, "queued")
        assert made["lastSlot"] == "2026-01-05T09:00:00.000Z"
        assert made["nextRunAt"] == "2026-01-05T10:00:00.000Z"

        maintenance = await (await api.client.get(MAINTENANCE, headers=auth())).json()
        assert maintenance["scheduler"] == {"running": True, "leader": True}
        assert {t["name"] for t in maintenance["tasks"]} == {
            "retention", "key-expiry", "telemetry-retention", "schedules"}
        runs = [r for r in maintenance["runs"] if r["task"] == SCHEDULES]
        assert [r["counts"]["enqueued"] for r in runs[:2]] == [0, 1]
        only = await (await api.client.get(f"{MAINTENANCE}?task=retention&limit=5",
                                           headers=auth())).json()
        assert all(r["task"] == "retention" for r in only["runs"])


async def test_the_maintenance_listing_is_for_admins_and_checks_its_query(api: Api) -> None:
    assert (await api.client.get(MAINTENANCE)).status == 401
    assert (await api.client.get(MAINTENANCE, headers=auth("monitoring"))).status == 403
    bad = await api.client.get(f"{MAINTENANCE}?limit=0", headers=auth())
    assert bad.status == 400 and (await bad.json())["details"][0]["field"] == "limit"


async def test_without_a_scheduler_the_listing_says_the_engine_prunes_on_its_own() -> None:
    async with serve_api({"TICKQ_SCHEDULER_ENABLED": "false"}) as api:
        out = await (await api.client.get(MAINTENANCE, headers=auth())).json()
        assert out["scheduler"]["running"] is False and "own timer" in out["note"]
        assert api.engine.prunes_on_timer


async def test_a_one_off_job_waits_until_its_time() -> None:
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        body = {"queue": "communication", "type": "send-email",
                "data": {"to": "fan@example.com", "template": "reminder"},
                "runAt": "2026-01-05T10:30:00+01:00"}
        resp = await api.client.post(ONE_OFF, json=body, headers=auth("user"))
        out = await resp.json()
        assert resp.status == 201, out
        assert (out["status"], out["runAt"]) == ("delayed", "2026-01-05T09:30:00.000Z")
        job = await api.engine.get(out["jobId"])
        assert job is not None and job.run_at == T0 + 5400 and job.tenant_id == "t1"
        assert job.expires_at == job.run_at + 12 * 3600  # the queue's expiry, from its time

        again = await api.client.post(ONE_OFF, json={**body, "idempotencyKey": "remind-1"},
                                      headers=auth("user"))
        assert again.status == 201
        dup = await api.client.post(ONE_OFF, json={**body, "idempotencyKey": "remind-1"},
                                    headers=auth("user"))
        assert dup.status == 200 and (await dup.json())["created"] is False


async def test_a_one_off_job_at_a_bad_time_is_refused(api: Api) -> None:
    email = {"queue": "communication", "type": "send-email",
             "data": {"to": "fan@example.com", "template": "reminder"}}
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    cases = [
        ({**email, "runAt": "2001-01-01T00:00:00Z"}, "runAt", "invalid_run_at"),
        ({**email, "runAt": "2999-01-01T00:00:00Z"}, "runAt", "invalid_run_at"),
        ({**email, "runAt": soon[:19]}, "runAt", "timezone_aware"),
        ({**email, "runAt": "next tuesday"}, "runAt", "value_error"),
        ({**email, "runAt": soon, "options": {"delay": 5}}, "options.delay", "invalid_delay"),
        ({**email, "data": {"template": "x"}, "runAt": soon}, "data.to", "missing"),
    ]
    for body, field, code in cases:
        resp = await api.client.post(ONE_OFF, json=body, headers=auth())
        out = await resp.json()
        assert resp.status == 400, (body, out)
        details = out.get("details") or []
        assert {"field": field, "code": code} in [
            {"field": d["field"], "code": d["code"]} for d in details], (body, out)
    monitoring = await api.client.post(ONE_OFF, json={**email, "runAt": soon},
                                       headers=auth("monitoring"))
    assert monitoring.status == 403
