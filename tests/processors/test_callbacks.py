"""Job callbacks and platform notifications, delivered to a real receiver on 127.0.0.1.

A job with a callback URL is reported there (signed, as a `webhook-deliver` job) when it
completes or lands in the dead-letter queue; completed payments, refunds and mints, and money
jobs in the dead-letter queue, are reported to the platform's URLs. A restart sweeps up reports
a crash left unsent. The receiver verifies every signature, so each report that arrived was
correctly signed. Callbacks are accepted over HTTP, and refused there when the URL is invalid.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from http_peer import (
    COMPLETED,
    FAILED,
    SECRET,
    Answer,
    Service,
    arrived,
    service,
    webhook_receiver,
)

import tickq
from tickq.errors import PermanentError, RetryableError
from tickq.processors.notify import Notifier
from tickq.processors.outbound import verify_signature
from tickq.processors.webhooks import WebhooksIntegration
from tickq.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))

from httpkit import JOBS, auth, email, serve_api

FACTORY = "tickq.processors.webhooks:integration"
ENV = {"WEBHOOK_SIGNING_SECRET": SECRET, "OUTBOUND_ALLOW_PRIVATE": "true",
       "WEBHOOK_TIMEOUT_S": "5"}
EMAIL = {"to": "fan@example.com", "template": "welcome"}
PAYMENT = {"userId": "u1", "venueId": "v1", "eventId": "e1", "amount": 2500,
           "paymentMethod": "pm_card_visa"}


def sent(job: tickq.Job) -> dict[str, Any]:
    return {"sent": True, "to": job.data["to"]}


def bounce(job: tickq.Job) -> None:
    raise PermanentError("mailbox unavailable", code="mailbox_unavailable")


def notifier(svc: Service) -> Notifier:
    return cast(WebhooksIntegration, svc.integrations.get("webhooks")).notifier


async def deliveries(engine: tickq.Engine) -> list[tickq.Job]:
    return await engine.list_jobs(tickq.JobQuery(type="webhook-deliver"))


# --- callbacks ----------------------------------------------------------------------------------


async def test_a_completed_job_is_reported_to_its_callback_url() -> None:
    async with webhook_receiver() as peer, \
            service(FACTORY, ENV, processors={"send-email": sent}) as svc:
        job = await svc.engine.enqueue("send-email", EMAIL, callback_url=peer.url("/cb?k=1"),
                                       tenant_id="t1", user_id="u1")
        done = await svc.engine.wait(job.id, timeout=5)
        [seen] = await arrived(peer, 1)
        [delivery] = await deliveries(svc.engine)
        delivery = await svc.engine.wait(delivery.id, timeout=5)

    assert done.state is COMPLETED
    assert seen.path == "/cb?k=1"
    assert verify_signature(SECRET, seen.headers["X-Tickq-Signature"], seen.body)
    body = seen.json()
    key = f"callback-{job.id}-completed"
    assert body["event"] == "job.completed" and body["id"] == key
    assert seen.headers["X-Tickq-Delivery"] == key
    assert body["data"] == {"jobId": job.id, "type": "send-email", "state": "completed",
                            "result": {"sent": True, "to": "fan@example.com"}, "attempts": 1,
                            "finishedAt": body["data"]["finishedAt"]}
    assert body["data"]["finishedAt"].endswith("Z")
    # the report is a job of its own: durable, retried, visible to the job's tenant and user
    assert delivery.state is COMPLETED and delivery.idempotency_key == key
    assert (delivery.tenant_id, delivery.user_id) == ("t1", "u1")


async def test_a_job_in_the_dead_letter_queue_is_reported_with_its_error() -> None:
    flaky_runs: list[int] = []

    def flaky(job: tickq.Job) -> None:
        flaky_runs.append(job.attempts)
        raise RetryableError("smtp busy", code="busy")

    async with webhook_receiver() as peer, \
            service(FACTORY, ENV, processors={"send-email": bounce, "send-sms": flaky}) as svc:
        bounced = await svc.engine.enqueue("send-email", EMAIL, callback_url=peer.url("/cb"))
        exhausted = await svc.engine.enqueue("send-sms", {"to": "+15550001111", "message": "hi"},
                                             callback_url=peer.url("/cb"), max_attempts=3)
        for job in (bounced, exhausted):
            assert (await svc.engine.wait(job.id, timeout=5)).state is FAILED
        seen = await arrived(peer, 2)
        await asyncio.sleep(0.1)  # nothing more comes: retries are not reported

    assert len(peer.seen) == 2 and flaky_runs == [1, 2, 3]
    bodies = {s.json()["data"]["jobId"]: s.json() for s in seen}
    first = bodies[bounced.id]
    assert first["event"] == "job.failed" and first["id"] == f"callback-{bounced.id}-failed"
    assert first["data"] == {"jobId": bounced.id, "type": "send-email", "state": "failed",
                             "attempts": 1, "finishedAt": first["data"]["finishedAt"],
                             "error": {"type": "PermanentError", "code": "mailbox_unavailable",
                                       "message": "mailbox unavailable", "attempt": 1}}
    second = bodies[exhausted.id]["data"]
    assert second["attempts"] == 3 and second["error"]["code"] == "busy"
    assert second["error"]["attempt"] == 3


async def test_a_callback_the_receiver_refuses_goes_to_the_dead_letter_queue_alone() -> None:
    async with webhook_receiver() as peer, \
            service(FACTORY, ENV, processors={"send-email": sent}) as svc:
        peer.answers.append(Answer(410, {"error": "gone"}))
        job = await svc.engine.enqueue("send-email", EMAIL, callback_url=peer.url("/cb"))
        await arrived(peer, 1)
        [delivery] = await deliveries(svc.engine)
        delivery = await svc.engine.wait(delivery.id, timeout=5)
        done = await svc.engine.get(job.id)
    assert delivery.state is FAILED and delivery.errors[0].code == "http_410"
    assert done is not None and done.state is COMPLETED  # the job itself is unaffected


# --- the start-up sweep -----------------------------------------------------------------------


async def _finish_without_reports(url: str, specs: list[tickq.JobSpec]) -> list[tickq.Job]:
    """Run jobs to their end on an engine that sends no reports: the store then holds finished
    jobs and no delivery jobs, as after a crash between the two."""
    async with tickq.open(url, shutdown_grace_s=1.0) as engine:
        engine.register("send-email", sent)
        engine.register("payment-process", lambda job: {"paymentIntentId": "pi_1"})
        done = [await engine.wait(e.job.id, timeout=5)
                for e in await engine.enqueue_many(specs)]
        assert await deliveries(engine) == []
    return done


async def test_a_restart_sends_the_reports_a_crash_left_unsent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tickq.db"
    async with webhook_receiver() as peer:
        email_job, payment_job = await _finish_without_reports(url, [
            tickq.JobSpec(type="send-email", data=EMAIL, callback_url=peer.url("/cb")),
            tickq.JobSpec(type="payment-process", data=PAYMENT)])
        env = {**ENV, "PAYMENT_WEBHOOK_URL": peer.url("/payment")}
        async with service(FACTORY, env, url=url, processors={"send-email": sent}) as svc:
            await asyncio.wait_for(notifier(svc).swept.wait(), 5)
            seen = await arrived(peer, 2)
            swept_first = notifier(svc).sweep_enqueued
            again = await notifier(svc).sweep()  # a second sweep finds nothing owed
            keys = sorted(j.idempotency_key or "" for j in await deliveries(svc.engine))

    assert email_job.state is COMPLETED and payment_job.state is COMPLETED
    assert swept_first == 2 and again == 0
    assert keys == sorted([f"callback-{email_job.id}-completed", f"notify-{payment_job.id}"])
    by_path = {s.path: s.json() for s in seen}
    assert by_path["/cb"]["data"]["jobId"] == email_job.id
    assert by_path["/payment"]["event"] == "payment.completed"
    assert len(peer.seen) == 2


async def test_a_report_in_the_dead_letter_queue_is_not_sent_again_on_restart(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tickq.db"
    async with webhook_receiver() as peer:
        [job] = await _finish_without_reports(url, [
            tickq.JobSpec(type="send-email", data=EMAIL, callback_url=peer.url("/cb"))])
        peer.answers.append(Answer(400, {"error": "unknown hook"}))
        async with service(FACTORY, ENV, url=url) as svc:
            await arrived(peer, 1)
            [delivery] = await deliveries(svc.engine)
            assert (await svc.engine.wait(delivery.id, timeout=5)).state is FAILED
        async with service(FACTORY, ENV, url=url) as svc:
            await asyncio.wait_for(notifier(svc).swept.wait(), 5)
            swept = notifier(svc).sweep_enqueued
    assert swept == 0 and len(peer.seen) == 1
    assert job.state is COMPLETED


async def test_the_sweep_looks_back_only_over_its_window() -> None:
    settings = load_settings({"TICKQ_DATABASE_URL": "memory://", **ENV})
    async with webhook_receiver() as peer, tickq.open("memory://") as engine:
        engine.register("send-email", sent)
        job = await engine.enqueue("send-email", EMAIL, callback_url=peer.url("/cb"))
        await engine.wait(job.id, timeout=5)
        await asyncio.sleep(0.05)
        assert await Notifier(engine, settings, window_s=0.01).sweep() == 0
        assert await Notifier(engine, settings, window_s=60).sweep() == 1
        [delivery] = await deliveries(engine)
    assert delivery.idempotency_key == f"callback-{job.id}-completed"


# --- platform notifications ---------------------------------------------------------------------


def declined(job: tickq.Job) -> None:
    raise PermanentError("card declined", code="card_declined")


async def test_money_jobs_notify_the_platforms_urls() -> None:
    processors = {
        "payment-process": lambda job: (declined(job) if job.data["amount"] == 13
                                        else {"paymentIntentId": "pi_1", "status": "succeeded"}),
        "refund-process": lambda job: {"refundId": "re_1"},
        "nft-mint": lambda job: {"mintAddress": "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"},
        "payout-process": lambda job: {"payoutId": "po_1"},
        "send-email": bounce,
    }
    async with webhook_receiver() as peer:
        # no OUTBOUND_ALLOW_PRIVATE: the operator's own URLs are trusted, loopback or not
        env = {"WEBHOOK_SIGNING_SECRET": SECRET, "PAYMENT_WEBHOOK_URL": peer.url("/payment"),
               "REFUND_WEBHOOK_URL": peer.url("/refund"), "NFT_WEBHOOK_URL": peer.url("/nft"),
               "ADMIN_WEBHOOK_URL": peer.url("/admin")}
        async with service(FACTORY, env, processors=processors) as svc:
            engine = svc.engine
            jobs = {
                "paid": await engine.enqueue("payment-process", PAYMENT, tenant_id="t1"),
                "declined": await engine.enqueue("payment-process", {**PAYMENT, "amount": 13}),
                "refund": await engine.enqueue("refund-process", {
                    "transactionId": "pi_0", "userId": "u1", "venueId": "v1"}),
                "mint": await engine.enqueue("nft-mint", {
                    "eventId": "e1", "ticketId": "t-1", "userId": "u1", "venueId": "v1"}),
                "payout": await engine.enqueue("payout-process", {
                    "venueId": "v1", "amount": 100, "bankAccountId": "ba_1"}),
                "email": await engine.enqueue("send-email", EMAIL),
            }
            for job in jobs.values():
                await engine.wait(job.id, timeout=5)
            seen = await arrived(peer, 4)
            await asyncio.sleep(0.1)  # the payout and the bounced email are not reported

    assert len(peer.seen) == 4
    by_path: Mapping[str, Any] = {s.path: s for s in seen}
    paid = by_path["/payment"].json()
    assert paid["event"] == "payment.completed" and paid["id"] == f"notify-{jobs['paid'].id}"
    assert paid["data"]["input"] == {**PAYMENT, "currency": "USD"}
    assert paid["data"]["result"] == {"paymentIntentId": "pi_1", "status": "succeeded"}
    assert paid["data"]["tenantId"] == "t1" and paid["data"]["queue"] == "money"
    assert by_path["/refund"].json()["event"] == "refund.completed"
    assert by_path["/nft"].json()["event"] == "nft.minted"
    alert = by_path["/admin"].json()
    assert alert["event"] == "operation.failed"
    assert alert["id"] == f"notify-{jobs['declined'].id}-failed"
    assert alert["data"]["error"]["code"] == "card_declined"
    assert alert["data"]["type"] == "payment-process"
    for s in seen:
        assert verify_signature(SECRET, s.headers["X-Tickq-Signature"], s.body)


# --- over HTTP ----------------------------------------------------------------------------------


async def test_a_callback_url_is_accepted_over_http_shown_and_called() -> None:
    async with webhook_receiver() as peer, serve_api(ENV) as api:
        callback = peer.url("/orders/77/job-done")
        resp = await api.client.post(JOBS, json={**email(), "callbackUrl": callback},
                                     headers=auth("service"))
        assert resp.status == 201, await resp.text()
        job_id = (await resp.json())["jobId"]
        await api.wait_state(job_id, "completed")
        [seen] = await arrived(peer, 1)
        view = await (await api.client.get(f"{JOBS}/{job_id}", headers=auth("service"))).json()

    assert view["callbackUrl"] == callback
    assert seen.path == "/orders/77/job-done"
    assert seen.json()["data"]["jobId"] == job_id
    assert verify_signature(SECRET, seen.headers["X-Tickq-Signature"], seen.body)


@pytest.mark.parametrize("callback", [
    "ftp://files.example/done", "example.com/done", "https://", "http://user:pw@example.com/",
    "https://example.com/ has space", "https://example.com/" + "a" * 2048, 42,
])
async def test_an_invalid_callback_url_is_refused_with_a_field_error(callback: object) -> None:
    async with serve_api() as api:
        resp = await api.client.post(JOBS, json={**email(), "callbackUrl": callback},
                                     headers=auth())
        body = await resp.json()
        batch = await api.client.post(f"{JOBS}/batch", headers=auth(), json={
            "queue": "communication",
            "jobs": [{"type": "send-email", "data": email()["data"], "callbackUrl": callback}]})
        batch_body = await batch.json()
    assert resp.status == 400, body
    assert [d["field"] for d in body["details"]] == ["callbackUrl"]
    assert batch.status == 400, batch_body
    assert [d["field"] for d in batch_body["details"]] == ["jobs[0].callbackUrl"]
