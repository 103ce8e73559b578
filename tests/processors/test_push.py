"""Push notifications through a real FCM-shaped gateway on 127.0.0.1, through the engine.

The peer checks the bearer key and the FCM HTTP v1 message shape (one target; a title and body;
a data map of strings only) and answers in FCM's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

import pytest
from http_peer import (
    COMPLETED,
    FAILED,
    PUSH_KEY,
    PUSH_PATH,
    WAITING,
    Answer,
    Peer,
    Service,
    fcm_error,
    push_gateway,
)
from http_peer import service as run_service

import tickq
from tickq.processors import Readiness
from tickq.processors.push import PROVIDER, user_topic

FACTORY = "tickq.processors.push:integration"
PUSH = {"userId": "u-42", "title": "Doors open", "body": "Gate B opens at 7pm"}


def service(peer: Peer, **extra: str) -> AbstractAsyncContextManager[Service]:
    return run_service(FACTORY, {"PUSH_API_URL": peer.url(PUSH_PATH), "PUSH_API_KEY": PUSH_KEY,
                                 "WEBHOOK_TIMEOUT_S": "5", **extra})


async def test_a_push_is_an_fcm_message_to_the_users_topic_with_the_bearer_key() -> None:
    data = {"eventId": "e-9", "seats": ["B-12", "B-13"], "count": 2, "vip": True}
    async with push_gateway() as peer, service(peer) as svc:
        job = await svc.engine.enqueue("send-push", {**PUSH, "data": data}, tenant_id="acme",
                                       user_id="u-42")
        done = await svc.engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED, done.errors
    [seen] = peer.seen
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == job.id  # send-push has no automatic key
    assert seen.json() == {"message": {
        "topic": "user-acme-u%2D42",
        "notification": {"title": "Doors open", "body": "Gate B opens at 7pm"},
        # FCM data values are strings: others travel as their JSON text
        "data": {"eventId": "e-9", "seats": '["B-12","B-13"]', "count": "2", "vip": "true"}}}
    assert set(done.result) == {"name", "topic"}
    assert done.result["name"].startswith("projects/tickq-test/messages/0:")
    assert done.result["topic"] == "user-acme-u%2D42"


def test_user_topics_are_valid_fcm_topic_names_and_never_shared() -> None:
    pairs = [("a-b", "c"), ("a", "b-c"), (None, "a-b-c"), ("tenant é", "user/1"), ("t", "%41")]
    topics = [user_topic(t, u) for t, u in pairs]
    assert len(set(topics)) == len(topics)
    assert all(re.fullmatch(r"[a-zA-Z0-9\-_.~%]+", t) for t in topics)
    assert user_topic(None, "u1") == "user-u1"
    assert user_topic("tenant é", "user/1") == "user-tenant%20%C3%A9-user%2F1"


async def test_an_unregistered_target_goes_to_the_dead_letter_queue() -> None:
    async with push_gateway() as peer, service(peer) as svc:
        peer.answers.append(fcm_error(404, "NOT_FOUND", "Requested entity was not found.",
                                      "UNREGISTERED"))
        job = await svc.engine.enqueue("send-push", PUSH)
        done = await svc.engine.wait(job.id, timeout=5)
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "fcm_unregistered" and "404" in error.message
    assert "Requested entity was not found." in error.message


async def test_a_wrong_key_is_permanent() -> None:
    async with push_gateway() as peer, service(peer, PUSH_API_KEY="wrong") as svc:
        job = await svc.engine.enqueue("send-push", PUSH)
        done = await svc.engine.wait(job.id, timeout=5)
    assert done.state is FAILED and done.errors[0].code == "fcm_unauthenticated"


async def test_429_defers_the_job_without_spending_an_attempt() -> None:
    async with push_gateway() as peer, service(peer) as svc:
        retry_at = "Wed, 21 Oct 2037 07:28:00 GMT"
        peer.answers.append(Answer(429, fcm_error(429, "RESOURCE_EXHAUSTED", "Quota").body,
                                   {"Retry-After": retry_at}))
        job = await svc.engine.enqueue("send-push", PUSH)
        event = await svc.event(tickq.EventKind.DEFERRED, job.id)
        now = svc.engine.clock.now()
        later = await svc.engine.get(job.id)
    assert event.reason == "rate_limited"
    assert later is not None and later.state is WAITING
    assert later.attempts == 0 and later.errors == []
    # an HTTP date is honoured, up to the one-hour cap on what a peer can ask for
    assert now + 3500 <= later.run_at <= now + 3700


@pytest.mark.parametrize(("answer", "code", "counts"), [
    (fcm_error(503, "UNAVAILABLE", "The service is currently unavailable."), "fcm_unavailable",
     True),
    (Answer(500, b"<html>oops</html>", {"Content-Type": "text/html"}), "http_500", True),
    (Answer(408, None), "http_408", False),
    (Answer(200, {"unexpected": True}), "bad_reply", True),
], ids=["503", "500-html", "408", "200-without-name"])
async def test_failures_on_the_gateways_side_are_retried(answer: Answer, code: str,
                                                         counts: bool) -> None:
    async with push_gateway() as peer, service(peer) as svc:
        peer.answers.append(answer)
        job = await svc.engine.enqueue("send-push", PUSH)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == code
    assert status["window_failures"] == (1 if counts else 0)
    assert len(peer.seen) == 2


async def test_a_timeout_is_retried() -> None:
    async with push_gateway() as peer, service(peer, WEBHOOK_TIMEOUT_S="0.3") as svc:
        peer.answers.append(Answer(200, {"name": "projects/p/messages/late"}, delay_s=3))
        job = await svc.engine.enqueue("send-push", PUSH)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == "timeout"
    assert status["window_failures"] == 1


@pytest.mark.parametrize(("env_vars", "missing"), [
    ({}, ["PUSH_API_URL", "PUSH_API_KEY"]),
    ({"PUSH_API_URL": "https://push.example/v1/projects/p/messages:send"}, ["PUSH_API_KEY"]),
])
async def test_not_configured_without_url_and_key(env_vars: Mapping[str, str],
                                                  missing: list[str]) -> None:
    async with run_service(FACTORY, dict(env_vars)) as svc:
        status = svc.integrations.status()["push"]
        job = await svc.engine.enqueue("send-push", PUSH)
        done = await svc.engine.wait(job.id, timeout=5)
    assert status.status is Readiness.NOT_CONFIGURED
    assert status.message is not None and all(var in status.message for var in missing)
    assert done.state is FAILED and done.errors[0].code == "not_configured"
