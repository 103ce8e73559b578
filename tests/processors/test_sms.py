"""SMS through a real Twilio-shaped server on 127.0.0.1, through the engine.

The peer checks basic auth and the Messages API form exactly as Twilio does and answers in
Twilio's JSON; tests script its failures and look at how each job ended and what the peer saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

import pytest
from http_peer import (
    COMPLETED,
    FAILED,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    WAITING,
    Answer,
    Peer,
    Service,
    twilio,
    twilio_error,
    twilio_form,
)
from http_peer import service as run_service

import tickq
from tickq.processors import Readiness
from tickq.processors.sms import PROVIDER, SmsIntegration
from tickq.settings import load_settings

FACTORY = "tickq.processors.sms:integration"
SMS = {"to": "+15551230001", "message": "Doors open at 7pm. Gate B."}


def env(peer: Peer, **extra: str) -> dict[str, str]:
    # No OUTBOUND_ALLOW_PRIVATE: Twilio's endpoint is the operator's, never a job's, so the
    # loopback peer is reachable without it.
    return {"TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM, "TWILIO_API_BASE": peer.url(""),
            "WEBHOOK_TIMEOUT_S": "5", **extra}


def service(peer: Peer, **extra: str) -> AbstractAsyncContextManager[Service]:
    return run_service(FACTORY, env(peer, **extra))


async def test_an_sms_is_a_twilio_messages_post_with_basic_auth_and_idempotency_token() -> None:
    async with twilio() as peer, service(peer) as svc:
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED, done.errors
    [seen] = peer.seen
    assert twilio_form(seen) == {"To": SMS["to"], "From": TWILIO_FROM, "Body": SMS["message"]}
    assert seen.headers["I-Twilio-Idempotency-Token"] == job.idempotency_key
    assert job.idempotency_key and job.idempotency_key.startswith("sms-+15551230001-")
    assert seen.headers["User-Agent"] == f"tickq/{tickq.__version__}"
    assert done.result["sid"].startswith("SM") and done.result["status"] == "queued"
    assert set(done.result) == {"sid", "status"}


async def test_the_job_may_name_its_own_sender() -> None:
    async with twilio() as peer, service(peer) as svc:
        job = await svc.engine.enqueue("send-sms", {**SMS, "from": "+15005550009"},
                                       idempotency_key="order-77-sms")
        done = await svc.engine.wait(job.id, timeout=5)
    assert done.state is COMPLETED, done.errors
    [seen] = peer.seen
    assert twilio_form(seen)["From"] == "+15005550009"
    assert seen.headers["I-Twilio-Idempotency-Token"] == "order-77-sms"


async def test_an_invalid_number_goes_to_the_dead_letter_queue_with_twilios_code() -> None:
    async with twilio() as peer, service(peer) as svc:
        peer.answers.append(twilio_error(400, 21211, "The 'To' number +1555 is not a valid "
                                                     "phone number."))
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.type == "PermanentError" and error.code == "twilio_21211"
    assert "400" in error.message and "not a valid phone number" in error.message
    assert status["window_failures"] == 0  # the request's fault, not Twilio's


async def test_wrong_credentials_are_permanent() -> None:
    async with twilio() as peer, service(peer, TWILIO_AUTH_TOKEN="wrong") as svc:
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)
    assert done.state is FAILED and done.attempts == 1
    assert done.errors[0].code == "twilio_20003"


async def test_429_defers_the_job_without_spending_an_attempt() -> None:
    async with twilio() as peer, service(peer) as svc:
        peer.answers.append(Answer(429, {"code": 20429, "message": "Too Many Requests",
                                         "status": 429}, {"Retry-After": "30"}))
        job = await svc.engine.enqueue("send-sms", SMS)
        event = await svc.event(tickq.EventKind.DEFERRED, job.id)
        now = svc.engine.clock.now()
        later = await svc.engine.get(job.id)
    assert event.reason == "rate_limited"
    assert later is not None and later.state is WAITING
    assert later.attempts == 0 and later.errors == []
    assert later.run_at >= now + 25  # Retry-After: 30, not the 10 ms retry backoff
    assert len(peer.seen) == 1


@pytest.mark.parametrize(("answer", "code", "counts"), [
    (twilio_error(500, 20500, "Internal Server Error"), "twilio_20500", True),
    (Answer(503, "upstream unavailable"), "http_503", True),
    (Answer(408, "request timeout"), "http_408", False),
], ids=["500", "503-not-json", "408"])
async def test_server_errors_and_408_are_retried(answer: Answer, code: str,
                                                 counts: bool) -> None:
    async with twilio() as peer, service(peer) as svc:
        peer.answers.append(answer)
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    [error] = done.errors
    assert error.type == "ProviderError" and error.code == code
    assert status["window_failures"] == (1 if counts else 0)
    # the retry is the same request: same idempotency token
    first, second = peer.seen
    assert first.headers["I-Twilio-Idempotency-Token"] == \
        second.headers["I-Twilio-Idempotency-Token"]


async def test_a_timeout_is_retried_and_counted_against_the_breaker() -> None:
    async with twilio() as peer, service(peer, WEBHOOK_TIMEOUT_S="0.3") as svc:
        peer.answers.append(Answer(201, {"sid": "SMlate", "status": "queued"}, delay_s=3))
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == "timeout" and "0.3s" in done.errors[0].message
    assert done.result["sid"] != "SMlate"
    assert status["window_failures"] == 1


@pytest.mark.parametrize(("env_vars", "missing"), [
    ({}, ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"]),
    ({"TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN},
     ["TWILIO_FROM_NUMBER"]),
])
async def test_not_configured_without_sid_token_and_sender(env_vars: Mapping[str, str],
                                                           missing: list[str]) -> None:
    integration = SmsIntegration(load_settings({"TICKQ_DATABASE_URL": "memory://",
                                                **env_vars}))
    assert integration.missing == missing
    async with run_service(FACTORY, dict(env_vars)) as svc:
        status = svc.integrations.status()["sms"]
        job = await svc.engine.enqueue("send-sms", SMS)
        done = await svc.engine.wait(job.id, timeout=5)
    assert status.status is Readiness.NOT_CONFIGURED
    assert done.state is FAILED and done.errors[0].code == "not_configured"
    assert all(var in done.errors[0].message for var in missing)
