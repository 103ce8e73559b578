"""POST /api/v1/queue/jobs and /jobs/batch: status codes, body shapes, validation, idempotency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpkit import JOBS, Api, auth, email, payment

ERROR_KEYS = {"error", "code", "message", "requestId"}


def assert_error(body: dict[str, Any], code: str) -> None:
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"details"}, body
    assert body["code"] == code, body


async def test_enqueue_answers_201_with_the_spec_shape(api: Api) -> None:
    body = {**payment(), "options": {"priority": 9, "delay": 2500, "attempts": 4}}
    resp = await api.client.post(JOBS, json=body, headers=auth())
    assert resp.status == 201
    out = await resp.json()
    assert set(out) == {"jobId", "queue", "type", "status", "options", "createdAt", "runAt",
                        "created"}
    assert (out["queue"], out["type"], out["status"], out["created"]) == (
        "money", "payment-process", "delayed", True)
    assert out["options"] == {"priority": 9, "delay": 2500, "attempts": 4}
    assert out["createdAt"].endswith("Z") and out["runAt"] > out["createdAt"]
    job = await api.engine.get(out["jobId"])
    assert job is not None
    assert (job.tenant_id, job.user_id, job.priority, job.max_attempts) == ("t1", "u1", 9, 4)
    assert job.run_at - job.created_at == pytest.approx(2.5)


async def test_enqueue_defaults_come_from_the_job_type(api: Api) -> None:
    resp = await api.client.post(JOBS, json=payment(), headers=auth())
    out = await resp.json()
    assert out["status"] == "queued"
    assert out["options"] == {"priority": 10, "delay": 0, "attempts": 10}


async def test_tenant_and_user_come_from_the_token_only(api: Api) -> None:
    body = {**email(), "tenantId": "t2"}
    resp = await api.client.post(JOBS, json=body, headers=auth(tenant="t9", user="u9"))
    assert resp.status == 400
    out = await resp.json()
    assert_error(out, "validation_error")
    assert out["details"][0]["field"] == "tenantId"
    job_id = await api.enqueue(email(), tenant="t9", user="u9", role="service")
    job = await api.engine.get(job_id)
    assert job is not None and (job.tenant_id, job.user_id) == ("t9", "u9")


@pytest.mark.parametrize(("patch", "field", "code"), [
    ({"queue": "nope"}, "queue", "unknown_queue"),
    ({"type": "nope"}, "type", "unknown_job_type"),
    ({"queue": "background"}, "type", "queue_mismatch"),
    ({"options": {"priority": 0}}, "options.priority", "greater_than_equal"),
    ({"options": {"priority": 11}}, "options.priority", "less_than_equal"),
    ({"options": {"priority": "5"}}, "options.priority", "int_type"),
    ({"options": {"priority": True}}, "options.priority", "int_type"),
    ({"options": {"delay": -1}}, "options.delay", "greater_than_equal"),
    ({"options": {"attempts": 0}}, "options.attempts", "greater_than_equal"),
    ({"options": {"attempts": 11}}, "options.attempts", "less_than_equal"),
    ({"options": {"priorty": 5}}, "options.priorty", "extra_forbidden"),
    ({"data": []}, "data", "dict_type"),
    ({"idempotencyKey": ""}, "idempotencyKey", "string_too_short"),
    ({"idempotencyKey": "has space"}, "idempotencyKey", "string_pattern_mismatch"),
])
async def test_enqueue_refuses_invalid_requests_naming_the_field(
        api: Api, patch: dict[str, Any], field: str, code: str) -> None:
    resp = await api.client.post(JOBS, json={**email(), **patch}, headers=auth())
    assert resp.status == 400
    out = await resp.json()
    assert out["error"] == "Bad Request"
    assert (out["details"][0]["field"], out["details"][0]["code"]) == (field, code), out
    assert await api.engine.list_jobs(_everything()) == []


async def test_job_data_is_checked_against_the_type_schema_listing_every_field(api: Api) -> None:
    body = {"queue": "money", "type": "payment-process",
            "data": {"userId": "u1", "venueId": "v1", "amount": -5, "extra": 1}}
    resp = await api.client.post(JOBS, json=body, headers=auth())
    assert resp.status == 400
    out = await resp.json()
    assert_error(out, "validation_error")
    fields = {d["field"] for d in out["details"]}
    assert fields == {"data.amount", "data.eventId", "data.paymentMethod", "data.extra"}
    assert all(set(d) == {"field", "message", "code"} for d in out["details"])


@pytest.mark.parametrize("missing", ["queue", "type", "data"])
async def test_required_fields(api: Api, missing: str) -> None:
    body = {k: v for k, v in email().items() if k != missing}
    resp = await api.client.post(JOBS, json=body, headers=auth())
    assert resp.status == 400
    assert (await resp.json())["details"] == [
        {"field": missing, "message": "Field required", "code": "missing"}]


async def test_data_is_stored_as_sent_not_sanitised(api: Api) -> None:
    hostile = "<script>alert(1)</script> SELECT * FROM users; DROP TABLE jobs"
    body = {"queue": "communication", "type": "send-email",
            "data": {"to": "fan@example.com", "template": "welcome",
                     "data": {"note": hostile, "nested": [{"x": hostile}]}}}
    job_id = await api.enqueue(body)
    resp = await api.client.get(f"{JOBS}/{job_id}", headers=auth())
    data = (await resp.json())["data"]
    assert data["data"] == {"note": hostile, "nested": [{"x": hostile}]}


async def test_monitoring_may_not_enqueue(api: Api) -> None:
    resp = await api.client.post(JOBS, json=email(), headers=auth("monitoring"))
    assert resp.status == 403
    assert_error(await resp.json(), "forbidden")


async def test_a_user_cannot_enqueue_for_another_user(api: Api) -> None:
    resp = await api.client.post(JOBS, json=payment(user="someone-else"),
                                 headers=auth("user", user="u1"))
    assert resp.status == 403
    assert_error(await resp.json(), "out_of_scope")
    resp = await api.client.post(JOBS, json=payment(user="u1"), headers=auth("user", user="u1"))
    assert resp.status == 201


async def test_a_venue_admin_cannot_enqueue_for_another_venue(api: Api) -> None:
    resp = await api.client.post(JOBS, json=payment(venue="v2"),
                                 headers=auth("venue_admin", venues=["v1"]))
    assert resp.status == 403
    assert_error(await resp.json(), "out_of_scope")


REFUND = {"queue": "money", "type": "refund-process",
          "data": {"transactionId": "pi_1", "userId": "u1", "venueId": "v1"}}
REPORT = {"queue": "background", "type": "generate-report",
          "data": {"reportType": "payments", "startDate": "2026-01-01", "endDate": "2026-01-31"}}
CLEANUP = {"queue": "background", "type": "cleanup-old-data",
           "data": {"dataType": "jobs", "olderThan": "30d"}}
TRANSFER = {"queue": "money", "type": "nft-transfer",
            "data": {"mintAddress": "M1", "fromUserId": "someone-else", "toUserId": "u1",
                     "toWallet": "W1", "ticketId": "t1"}}


@pytest.mark.parametrize(("body", "role", "allowed"), [
    (REFUND, "user", False), (REFUND, "venue_admin", True), (REFUND, "service", True),
    (REPORT, "user", False), (REPORT, "admin", True),
    (CLEANUP, "user", False), (CLEANUP, "venue_admin", False), (CLEANUP, "service", True),
    (TRANSFER, "user", False), (TRANSFER, "admin", True),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_money_moves_reports_and_deletions_need_an_elevated_role(
        api: Api, body: dict[str, Any], role: str, allowed: bool) -> None:
    resp = await api.client.post(JOBS, json=body, headers=auth(role, venues=["v1"]))
    if allowed:
        assert resp.status == 201, await resp.text()
    else:
        assert resp.status == 403
        assert_error(await resp.json(), "out_of_scope")


async def test_a_venue_admins_report_must_name_one_of_their_venues(api: Api) -> None:
    resp = await api.client.post(JOBS, json=REPORT, headers=auth("venue_admin", venues=["v1"]))
    assert resp.status == 403 and "venueId" in (await resp.json())["message"]
    named = {**REPORT, "data": {**REPORT["data"], "venueId": "v1"}}
    resp = await api.client.post(JOBS, json=named, headers=auth("venue_admin", venues=["v1"]))
    assert resp.status == 201


# --- idempotency ------------------------------------------------------------------------------


async def test_a_repeated_key_returns_the_existing_job_with_200(api: Api) -> None:
    body = {**payment(), "idempotencyKey": "order-1"}
    first = await api.client.post(JOBS, json=body, headers=auth())
    second = await api.client.post(JOBS, json=body, headers=auth())
    assert (first.status, second.status) == (201, 200)
    one, two = await first.json(), await second.json()
    assert one["jobId"] == two["jobId"]
    assert (one["created"], two["created"]) == (True, False)


async def test_the_automatic_key_deduplicates_payments(api: Api) -> None:
    first = await api.client.post(JOBS, json=payment(), headers=auth())
    second = await api.client.post(JOBS, json=payment(), headers=auth())
    assert (first.status, second.status) == (201, 200)
    assert (await first.json())["jobId"] == (await second.json())["jobId"]


async def test_a_key_reused_for_different_data_is_a_conflict(api: Api) -> None:
    await api.enqueue({**payment(amount=1000), "idempotencyKey": "order-2"})
    resp = await api.client.post(JOBS, json={**payment(amount=2000), "idempotencyKey": "order-2"},
                                 headers=auth())
    assert resp.status == 409
    assert_error(await resp.json(), "idempotency_conflict")


async def test_keys_are_per_tenant(api: Api) -> None:
    body = {**email(), "idempotencyKey": "same"}
    a = await api.enqueue(body, tenant="ta")
    b = await api.enqueue(body, tenant="tb")
    assert a != b


async def test_a_key_held_by_a_job_the_caller_cannot_see_is_a_conflict(api: Api) -> None:
    body = {**email(), "idempotencyKey": "mine"}
    await api.enqueue(body, role="user", user="alice")
    resp = await api.client.post(JOBS, json=body, headers=auth("user", user="bob"))
    assert resp.status == 409
    out = await resp.json()
    assert_error(out, "idempotency_conflict")
    assert "jobId" not in out


async def test_100_concurrent_enqueues_with_one_key_make_one_job(api: Api) -> None:
    body = {**payment(), "idempotencyKey": "burst"}
    headers = auth()
    responses = await asyncio.gather(*(api.client.post(JOBS, json=body, headers=headers)
                                       for _ in range(100)))
    statuses = sorted(r.status for r in responses)
    ids = {(await r.json())["jobId"] for r in responses}
    assert statuses == [200] * 99 + [201]
    assert len(ids) == 1
    jobs = await api.engine.list_jobs(_everything())
    assert [j.id for j in jobs] == list(ids)


# --- batch -----------------------------------------------------------------------------------

BATCH = f"{JOBS}/batch"


def batch(*jobs: dict[str, Any], **options: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"queue": "communication", "jobs": list(jobs)}
    if options:
        body["options"] = options
    return body


def mail(to: str, **extra: Any) -> dict[str, Any]:
    return {"type": "send-email", "data": {"to": to, "template": "welcome"}, **extra}


async def test_batch_enqueues_every_job_in_order(api: Api) -> None:
    resp = await api.client.post(BATCH, json=batch(mail("a@x.io"), mail("b@x.io"),
                                                   mail("c@x.io", options={"priority": 9})),
                                 headers=auth())
    assert resp.status == 201
    out = await resp.json()
    assert (out["queue"], out["total"], out["successful"], out["failed"]) == (
        "communication", 3, 3, 0)
    assert out["errors"] == []
    assert [j["index"] for j in out["jobs"]] == [0, 1, 2]
    assert all(set(j) == {"index", "jobId", "type", "status", "created"} for j in out["jobs"])
    third = await api.engine.get(out["jobs"][2]["jobId"])
    assert third is not None and third.priority == 9


async def test_batch_without_stop_on_error_enqueues_the_valid_jobs(api: Api) -> None:
    resp = await api.client.post(BATCH, json=batch(mail("a@x.io"), mail("not-an-email"),
                                                   {"type": "send-sms", "data": {}}),
                                 headers=auth())
    assert resp.status == 201
    out = await resp.json()
    assert (out["total"], out["successful"], out["failed"]) == (3, 1, 2)
    assert [e["index"] for e in out["errors"]] == [1, 2]
    assert out["errors"][0]["details"][0]["field"] == "jobs[1].data.to"
    assert {d["field"] for d in out["errors"][1]["details"]} == {
        "jobs[2].data.to", "jobs[2].data.message"}
    assert len(await api.engine.list_jobs(_everything())) == 1


async def test_batch_with_stop_on_error_enqueues_nothing(api: Api) -> None:
    body = batch(mail("a@x.io"), mail("bad"), mail("worse"), stopOnError=True)
    resp = await api.client.post(BATCH, json=body, headers=auth())
    assert resp.status == 400
    out = await resp.json()
    assert_error(out, "batch_invalid")
    assert [d["field"] for d in out["details"]] == ["jobs[1].data.to", "jobs[2].data.to"]
    assert await api.engine.list_jobs(_everything()) == []


async def test_batch_validate_all_false_stops_at_the_first_problem(api: Api) -> None:
    body = batch(mail("bad"), mail("worse"), stopOnError=True, validateAll=False)
    resp = await api.client.post(BATCH, json=body, headers=auth())
    assert resp.status == 400
    assert [d["field"] for d in (await resp.json())["details"]] == ["jobs[0].data.to"]


async def test_batch_where_every_job_is_invalid_is_a_400(api: Api) -> None:
    resp = await api.client.post(BATCH, json=batch(mail("bad")), headers=auth())
    assert resp.status == 400
    assert_error(await resp.json(), "batch_invalid")


@pytest.mark.parametrize(("body", "field"), [
    ({"queue": "communication", "jobs": []}, "jobs"),
    ({"queue": "communication", "jobs": [mail(f"u{i}@x.io") for i in range(101)]}, "jobs"),
    ({"queue": "nope", "jobs": [mail("a@x.io")]}, "queue"),
    ({"queue": "money", "jobs": [mail("a@x.io")]}, "jobs[0].type"),
])
async def test_batch_shape_errors(api: Api, body: dict[str, Any], field: str) -> None:
    resp = await api.client.post(BATCH, json=body, headers=auth())
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == field


@pytest.mark.parametrize("role", ["user", "service", "monitoring"])
async def test_batch_is_for_admins_and_venue_admins(api: Api, role: str) -> None:
    resp = await api.client.post(BATCH, json=batch(mail("a@x.io")), headers=auth(role))
    assert resp.status == 403
    assert_error(await resp.json(), "forbidden")
    resp = await api.client.post(BATCH, json=batch(mail("a@x.io")), headers=auth("venue_admin"))
    assert resp.status == 201


async def test_batch_duplicates_report_the_existing_job(api: Api) -> None:
    existing = await api.enqueue({**email("a@x.io"), "idempotencyKey": "k1"})
    body = batch(mail("a@x.io", idempotencyKey="k1"), mail("a@x.io", idempotencyKey="k1"))
    resp = await api.client.post(BATCH, json=body, headers=auth())
    assert resp.status == 200  # nothing new was created
    out = await resp.json()
    assert [(j["jobId"], j["created"]) for j in out["jobs"]] == [(existing, False)] * 2


def _everything() -> Any:
    from tickq.storage.base import JobQuery

    return JobQuery(limit=1000)
