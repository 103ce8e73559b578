"""Stripe webhooks in: POST /api/v1/queue/webhooks/stripe on the real application, with jobs run
against localstripe. Events are signed the way Stripe signs them (`t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" under the endpoint secret>`), and once by localstripe itself."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

import tickq
from tickq.clock import SystemClock
from tickq.http import make_app
from tickq.http.webhooks_in import STRIPE_PATH
from tickq.processors import Integrations
from tickq.processors.payments import StripeIntegration
from tickq.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

WEBHOOK_SECRET = "whsec_tickq_test_0123456789abcdef"
SECRET_KEY = "sk_test_tickq_0123456789"  # as the fixtures configure
JWT_SECRET = "tickq-test-secret-that-is-long-enough-0123456789"
THREE_D_SECURE_CARD = {"number": "4000002500003155", "exp_month": 12, "exp_year": 2030,
                       "cvc": "123"}
_event_ids = itertools.count(1)


class Served:
    def __init__(self, client: TestClient[web.Request, web.Application],
                 engine: tickq.Engine, stripe: StripeIntegration) -> None:
        self.client, self.engine, self.stripe = client, engine, stripe

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(STRIPE_PATH, data=body, headers=headers)
        return resp.status, await resp.json()

    async def pending_payment(self, payment: dict[str, Any]) -> tickq.Job:
        """A payment job that completed as pending: the card wants 3-D Secure."""
        card = await self.stripe.client.v1.payment_methods.create_async(
            {"type": "card", "card": THREE_D_SECURE_CARD})
        job = await self.engine.enqueue("payment-process", {**payment, "paymentMethod": card.id})
        done = await self.engine.wait(job.id, timeout=10)
        assert done.state is tickq.JobState.COMPLETED, done.errors
        assert (done.result["status"], done.result["stripeStatus"]) == ("pending",
                                                                        "requires_action")
        return done

    async def authenticated_payment(self, payment: dict[str, Any], stripe_url: str, *,
                                    success: bool) -> tuple[tickq.Job, dict[str, Any]]:
        """A pending payment whose customer then completes (or fails) 3-D Secure: the job, and
        its intent as it was before the customer acted."""
        job = await self.pending_payment(payment)
        pi = await intent(self, job.result["paymentIntentId"])
        await authenticate(stripe_url, pi, success=success)
        return job, pi


@asynccontextmanager
async def serve(settings: Settings, url: str = "memory://") -> AsyncIterator[Served]:
    engine = tickq.Engine(tickq.open_store(url), shutdown_grace_s=0.5)
    stripe = StripeIntegration(settings, SystemClock())
    app = make_app(settings, engine, integrations=Integrations(engine, [stripe]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Served(client, engine, stripe)


@pytest.fixture
def app_settings(stripe_url: str, stripe_settings: Callable[..., Settings]
                 ) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return stripe_settings(stripe_url, JWT_SECRET=JWT_SECRET,
                               STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                               API_RATE_LIMIT_ENABLED="false", **env)
    return make


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None
           ) -> dict[str, str]:
    t = int(time.time() if at is None else at)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def event(type: str, obj: dict[str, Any], *, created: int | None = None) -> bytes:
    return orjson.dumps({
        "id": f"evt_test{next(_event_ids):06d}", "object": "event", "type": type,
        "api_version": "2024-06-20", "created": int(time.time()) if created is None else created,
        "livemode": False, "data": {"object": obj}})


async def intent(served: Served, intent_id: str) -> dict[str, Any]:
    found = await served.stripe.client.v1.payment_intents.retrieve_async(intent_id)
    return found.to_dict()


async def authenticate(stripe_url: str, intent_obj: dict[str, Any], *, success: bool) -> None:
    """The customer completes (or fails) 3-D Secure, at localstripe."""
    url = f"{stripe_url}/v1/payment_intents/{intent_obj['id']}/_authenticate"
    form = {"client_secret": intent_obj["client_secret"],
            "success": "true" if success else "false"}
    async with ClientSession(headers={"Authorization": f"Bearer {SECRET_KEY}"}) as s, s.post(
            url, data=form) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_signed_event_records_how_a_pending_payment_ended(
        app_settings: Callable[..., Settings], stripe_url: str,
        payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        job, pi = await served.authenticated_payment(payment(), stripe_url, success=True)
        body = event("payment_intent.succeeded", await intent(served, pi["id"]))

        status, answer = await served.post(body, signed(body))
        after = await served.engine.get(job.id)

    assert status == 200
    assert answer == {"received": True, "duplicate": False, "matched": True, "jobId": job.id}
    assert after is not None and after.state is tickq.JobState.COMPLETED
    result = after.result
    assert (result["status"], result["stripeStatus"]) == ("succeeded", "succeeded")
    assert result["paymentIntentId"] == pi["id"] and result["amount"] == 2500
    [seen] = result["webhookEvents"]
    assert (seen["id"], seen["type"], seen["objectId"], seen["applied"]) == (
        orjson.loads(body)["id"], "payment_intent.succeeded", pi["id"], True)


async def test_a_payment_failed_event_marks_the_payment_failed_with_stripes_reason(
        app_settings: Callable[..., Settings], stripe_url: str,
        payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        job, pi = await served.authenticated_payment(payment(), stripe_url, success=False)
        body = event("payment_intent.payment_failed", await intent(served, pi["id"]))

        status, _ = await served.post(body, signed(body))
        after = await served.engine.get(job.id)

    assert status == 200
    assert after is not None
    assert (after.result["status"], after.result["stripeStatus"]) == (
        "failed", "requires_payment_method")
    assert after.result["failureCode"] == "payment_intent_authentication_failure"


async def test_a_redelivered_event_is_a_duplicate_even_after_a_restart(
        app_settings: Callable[..., Settings], payment: Callable[..., Any],
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tickq.db"
    async with serve(app_settings(), url) as served:
        job = await served.pending_payment(payment())
        body = event("payment_intent.processing", {
            **await intent(served, job.result["paymentIntentId"]), "status": "processing"})
        first = await served.post(body, signed(body))
        again = await served.post(body, signed(body))

    async with serve(app_settings(), url) as restarted:
        after_restart = await restarted.post(body, signed(body))
        stored = await restarted.engine.get(job.id)

    assert first == (200, {"received": True, "duplicate": False, "matched": True,
                           "jobId": job.id})
    assert again[1]["duplicate"] is True
    assert after_restart == (200, {"received": True, "duplicate": True, "matched": True,
                                   "jobId": job.id})
    assert stored is not None
    assert len(stored.result["webhookEvents"]) == 1
    assert stored.result["stripeStatus"] == "processing"


async def test_an_older_event_does_not_undo_a_newer_one(
        app_settings: Callable[..., Settings], stripe_url: str,
        payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        job, pi = await served.authenticated_payment(payment(), stripe_url, success=True)
        now = int(time.time())
        succeeded = event("payment_intent.succeeded", await intent(served, pi["id"]),
                          created=now)
        late = event("payment_intent.processing", {**pi, "status": "processing"},
                     created=now - 5)
        await served.post(succeeded, signed(succeeded))

        status, answer = await served.post(late, signed(late))
        after = await served.engine.get(job.id)

    assert (status, answer["duplicate"]) == (200, False)
    assert after is not None and after.result["status"] == "succeeded"
    assert [e["applied"] for e in after.result["webhookEvents"]] == [True, False]


def signature_of_kind(kind: str, body: bytes) -> dict[str, str]:
    if kind == "missing":
        return {"Content-Type": "application/json"}
    if kind == "wrong secret":
        return signed(body, secret="whsec_someone_else")
    if kind == "body changed":
        return signed(body.replace(b"succeeded", b"SUCCEEDED"))
    return {"Stripe-Signature": "v1=abc", "Content-Type": "application/json"}


@pytest.mark.parametrize(("kind", "code"), [
    ("missing", "missing_signature"), ("wrong secret", "invalid_signature"),
    ("body changed", "invalid_signature"), ("garbled", "invalid_signature")])
async def test_an_event_without_a_valid_signature_is_refused(
        app_settings: Callable[..., Settings], kind: str, code: str) -> None:
    body = event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent",
                                              "status": "succeeded", "metadata": {}})
    async with serve(app_settings()) as served:
        status, answer = await served.post(body, signature_of_kind(kind, body))

    assert status == 400
    assert answer["code"] == code
    assert set(answer) >= {"error", "code", "message", "requestId"}
    assert answer["error"] == "Bad Request"


async def test_a_correctly_signed_but_stale_event_is_refused(
        app_settings: Callable[..., Settings], payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        job = await served.pending_payment(payment())
        body = event("payment_intent.succeeded", {
            **await intent(served, job.result["paymentIntentId"]), "status": "succeeded"})

        status, answer = await served.post(body, signed(body, at=time.time() - 301))
        after = await served.engine.get(job.id)

    assert (status, answer["code"]) == (400, "stale_signature")
    assert after is not None and after.result["status"] == "pending"
    assert "webhookEvents" not in after.result


async def test_a_signed_body_that_is_not_an_event_is_refused(
        app_settings: Callable[..., Settings]) -> None:
    body = b'{"hello": "world"}'
    async with serve(app_settings()) as served:
        status, answer = await served.post(body, signed(body))

    assert (status, answer["code"]) == (400, "invalid_payload")


async def test_an_event_about_nothing_of_ours_is_acknowledged_unmatched(
        app_settings: Callable[..., Settings]) -> None:
    foreign = event("payment_intent.succeeded", {"id": "pi_foreign", "object": "payment_intent",
                                                 "status": "succeeded", "metadata": {}})
    unknown_job = event("payment_intent.succeeded", {
        "id": "pi_other", "object": "payment_intent", "status": "succeeded",
        "metadata": {"tickq_job_id": "01NOSUCHJOB000000000000000"}})
    customer = event("customer.created", {"id": "cus_1", "object": "customer", "metadata": {}})
    async with serve(app_settings()) as served:
        answers = [await served.post(b, signed(b)) for b in (foreign, unknown_job, customer)]

    assert answers == [(200, {"received": True, "duplicate": False, "matched": False})] * 3


async def test_an_event_for_a_job_still_waiting_is_refused_for_redelivery(
        app_settings: Callable[..., Settings], payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        await served.engine.pause("money")
        job = await served.engine.enqueue("payment-process", payment())
        body = event("payment_intent.succeeded", {
            "id": "pi_1", "object": "payment_intent", "status": "succeeded",
            "metadata": {"tickq_job_id": job.id}})

        status, answer = await served.post(body, signed(body))
        after = await served.engine.get(job.id)

    assert (status, answer["code"]) == (409, "job_not_finished")
    assert after is not None and after.state is tickq.JobState.WAITING and after.result is None


async def test_without_a_webhook_secret_the_route_answers_not_configured(
        app_settings: Callable[..., Settings]) -> None:
    settings = app_settings().model_copy(update={"stripe_webhook_secret": None})
    body = event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    async with serve(settings) as served:
        status, answer = await served.post(body, signed(body))

    assert (status, answer["code"]) == (503, "stripe_webhooks_not_configured")
    assert "STRIPE_WEBHOOK_SECRET" in answer["message"]


async def test_localstripe_delivers_the_event_and_the_job_records_it(
        app_settings: Callable[..., Settings], stripe_url: str,
        payment: Callable[..., Any]) -> None:
    async with serve(app_settings()) as served:
        hook = str(served.client.make_url(STRIPE_PATH))
        async with ClientSession() as s, s.post(
                f"{stripe_url}/_config/webhooks/tickq",
                data={"url": hook, "secret": WEBHOOK_SECRET,
                      "events[]": "payment_intent.succeeded"}) as resp:
            assert resp.status == 200, await resp.text()
        job, pi = await served.authenticated_payment(payment(), stripe_url, success=True)

        deadline = time.monotonic() + 5
        while True:  # localstripe waits a second before it delivers
            current = await served.engine.get(job.id)
            assert current is not None
            if current.result.get("webhookEvents") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)

    assert current.result["status"] == "succeeded"
    [delivered] = current.result["webhookEvents"]
    assert (delivered["type"], delivered["objectId"], delivered["applied"]) == (
        "payment_intent.succeeded", pi["id"], True)
