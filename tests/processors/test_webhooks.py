"""Signed webhook delivery to a real receiver on 127.0.0.1, through the engine; the address guard,
signatures and Retry-After on their own.

The receiver verifies every delivery's signature with `verify_signature` over the raw body and
refuses (401) one that does not verify, so every completed delivery here was correctly signed.
Loopback receivers need OUTBOUND_ALLOW_PRIVATE=true, which the tests set except where they show
the guard refusing.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from http_peer import (
    COMPLETED,
    FAILED,
    SECRET,
    Answer,
    Peer,
    Service,
    webhook_receiver,
)
from http_peer import service as run_service

import tickq
from tickq.errors import ConfigError
from tickq.processors import Readiness
from tickq.processors.outbound import (
    MAX_RETRY_AFTER_S,
    DestinationRefused,
    GuardedResolver,
    refused_because,
    retry_after_s,
    sign,
    verify_signature,
)
from tickq.processors.webhooks import PROVIDER, WebhooksIntegration
from tickq.settings import load_settings

FACTORY = "tickq.processors.webhooks:integration"
ALLOW = {"OUTBOUND_ALLOW_PRIVATE": "true"}


def service(**extra: str) -> AbstractAsyncContextManager[Service]:
    return run_service(FACTORY, {"WEBHOOK_SIGNING_SECRET": SECRET, "WEBHOOK_TIMEOUT_S": "5",
                                 **extra})


def hook(peer: Peer, path: str = "/hooks/orders", **extra: object) -> dict[str, object]:
    return {"url": peer.url(path), "event": "order.paid",
            "payload": {"orderId": "o-1", "amount": 4200}, **extra}


async def deliver(svc: Service, data: dict[str, object], **options: object) -> tickq.Job:
    job = await svc.engine.enqueue("webhook-deliver", data, **options)
    return await svc.engine.wait(job.id, timeout=5)


# --- what is sent ---------------------------------------------------------------------------


async def test_a_delivery_is_signed_json_that_the_receiver_verifies() -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        before = time.time()
        done = await deliver(svc, hook(peer, deliveryId="dlv-1"))

    assert done.state is COMPLETED, done.errors
    assert done.result == {"deliveryId": "dlv-1", "status": 200}
    [seen] = peer.seen
    body = seen.json()
    assert body == {"id": "dlv-1", "event": "order.paid", "createdAt": body["createdAt"],
                    "data": {"orderId": "o-1", "amount": 4200}}
    created = datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00"))
    assert abs(created.timestamp() - done.created_at) < 0.001
    assert seen.headers["X-Tickq-Event"] == "order.paid"
    assert seen.headers["X-Tickq-Delivery"] == "dlv-1"
    assert seen.headers["User-Agent"] == f"tickq/{tickq.__version__}"
    header = seen.headers["X-Tickq-Signature"]
    t = int(header.split(",")[0].removeprefix("t="))
    assert before - 1 <= t <= time.time() + 1
    assert verify_signature(SECRET, header, seen.body, 60, time.time())
    # a changed byte, another secret, or a replay past the tolerance are all refused
    tampered = seen.body.replace(b"4200", b"4201")
    assert tampered != seen.body
    assert not verify_signature(SECRET, header, tampered, 60, time.time())
    assert not verify_signature("another-secret", header, seen.body, 60, time.time())
    assert not verify_signature(SECRET, header, seen.body, 60, t + 61)


def test_verify_signature_reads_the_header_strictly() -> None:
    body, t = b'{"id":"x"}', 1_700_000_000
    good = sign(SECRET, body, t)
    assert verify_signature(SECRET, good, body, 300, t)
    # while a secret is rotated a sender may sign with both: one match is enough
    rotated = f"t={t},v1={'0' * 64},{good.split(',')[1]}"
    assert verify_signature(SECRET, rotated, body, 300, t)
    for bad in (None, "", "v1=abc", f"t={t}", f"t=soon,{good.split(',')[1]}",
                good.replace("v1=", "v0="), good + ",garbage"):
        assert not verify_signature(SECRET, bad, body, 300, t), bad
    assert not verify_signature(SECRET, good, body, 300, t - 301)


async def test_the_delivery_id_defaults_to_the_job_id_and_a_retry_sends_the_same_body() -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        peer.answers.append(Answer(500, {"error": "down"}))
        done = await deliver(svc, hook(peer))
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == "http_500" and done.errors[0].type == "RetryableError"
    assert status["window_failures"] == 0  # a receiver the job chose is not the provider
    first, second = peer.seen
    assert first.body == second.body
    assert first.headers["X-Tickq-Delivery"] == second.headers["X-Tickq-Delivery"] == done.id


# --- how answers are classified ---------------------------------------------------------------


@pytest.mark.parametrize(("answer", "code"), [
    (Answer(502, "bad gateway"), "http_502"),
    (Answer(408, None), "http_408"),
    (Answer(429, None, {"Retry-After": "20"}), "http_429"),
], ids=["502", "408", "429"])
async def test_server_errors_408_and_429_are_retried_without_touching_the_provider(
        answer: Answer, code: str) -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        peer.answers.append(answer)
        done = await deliver(svc, hook(peer))
        status = svc.breaker(PROVIDER)
        limiter = svc.engine.providers.limiter.status(PROVIDER, svc.engine.clock.now())
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == code
    # one receiver's trouble is this job's: the shared breaker and bucket are untouched
    assert status["window_failures"] == 0 and status["state"] == "closed"
    assert limiter["cooldown_left_s"] == 0


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_other_client_errors_go_to_the_dead_letter_queue(status: int) -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        peer.answers.append(Answer(status, {"error": "no"}))
        done = await deliver(svc, hook(peer))
        breaker = svc.breaker(PROVIDER)
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.type == "PermanentError" and error.code == f"http_{status}"
    assert f"answered {status}" in error.message
    assert breaker["window_failures"] == 0


async def test_a_timeout_is_retried() -> None:
    async with webhook_receiver() as peer, service(WEBHOOK_TIMEOUT_S="0.3", **ALLOW) as svc:
        peer.answers.append(Answer(200, None, delay_s=3))
        done = await deliver(svc, hook(peer))
        status = svc.breaker(PROVIDER)
    assert done.state is COMPLETED and done.attempts == 2
    assert done.errors[0].code == "timeout"
    assert status["window_failures"] == 0


async def test_a_redirect_is_not_followed() -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        peer.answers.append(Answer(302, None, {"Location": peer.url("/elsewhere?token=x")}))
        done = await deliver(svc, hook(peer))
    assert done.state is FAILED and done.errors[0].code == "redirect"
    assert "token=x" not in done.errors[0].message
    assert [s.path for s in peer.seen] == ["/hooks/orders"]


async def test_a_closed_port_is_a_connection_failure_that_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with service(**ALLOW) as svc:
        job = await svc.engine.enqueue(
            "webhook-deliver", {"url": f"http://127.0.0.1:{port}/", "event": "x"},
            max_attempts=2)
        done = await svc.engine.wait(job.id, timeout=5)
        status = svc.breaker(PROVIDER)
    assert done.state is FAILED and done.attempts == 2
    assert {e.code for e in done.errors} == {"connection"}
    assert status["window_failures"] == 0


def test_retry_after_is_read_as_seconds_or_an_http_date_and_capped() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Tue, 14 Nov 2023 22:13:40 GMT", now) == 20.0
    assert retry_after_s("Tue, 14 Nov 2023 22:13:00 GMT", now) == 0.0  # in the past
    assert retry_after_s("999999", now) == MAX_RETRY_AFTER_S
    for unreadable in (None, "", "soon", "-5", "nan"):
        assert 0.0 <= retry_after_s(unreadable, now) <= 1.0


# --- the address guard --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_receivers_are_refused_unless_allowed(host: str) -> None:
    async with webhook_receiver() as peer, service() as svc:
        url = peer.url("/hooks").replace("127.0.0.1", host)
        done = await deliver(svc, {"url": url, "event": "order.paid"})
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "destination_refused" and "loopback" in error.message
    assert "OUTBOUND_ALLOW_PRIVATE" in error.message
    assert peer.seen == []


async def test_loopback_receivers_are_reached_when_allowed() -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        done = await deliver(svc, {"url": peer.url("/hooks").replace("127.0.0.1", "localhost"),
                                   "event": "order.paid"})
    assert done.state is COMPLETED, done.errors
    assert len(peer.seen) == 1


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("100.64.0.1",
                                                            "not globally routable"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fc00::1",
                                                                            "private"),
    ("ff02::1", "multicast"), ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("8.8.8.8", None), ("2606:4700:4700::1111", None),
])
def test_addresses_are_judged_by_what_they_reach(address: str, reason: str | None) -> None:
    assert refused_because(ipaddress.ip_address(address)) == reason


class StaticResolver(AbstractResolver):
    """A DNS stand-in: each name resolves to the addresses given (what a hostile DNS server
    might answer at delivery time)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=addr, port=port,
                              family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for addr in self.table[host]]

    async def close(self) -> None:
        return None


async def test_the_guard_checks_the_address_the_connection_uses() -> None:
    """A name that now resolves to loopback (DNS rebinding) is refused by aiohttp's resolver
    step itself; with a public address alongside, only the public one is offered."""
    async with webhook_receiver() as peer:
        table = {"rebound.example": ["127.0.0.1"],
                 "mixed.example": ["127.0.0.1", "93.184.215.14"]}
        guarded = GuardedResolver(StaticResolver(table))
        connector = aiohttp.TCPConnector(resolver=guarded, use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(DestinationRefused, match=r"rebound\.example \(127\.0\.0\.1\)"):
                await session.post(f"http://rebound.example:{peer.port}/", data=b"{}")
        offered = await guarded.resolve("mixed.example", peer.port)
        # without the guard the same name reaches the loopback peer: the check is what stops it
        plain = aiohttp.TCPConnector(resolver=StaticResolver(table), use_dns_cache=False)
        async with aiohttp.ClientSession(connector=plain) as session, \
                session.post(f"http://rebound.example:{peer.port}/", data=b"{}") as resp:
            assert resp.status == 401  # reached the receiver, which wants a signature
    assert [r["host"] for r in offered] == ["93.184.215.14"]
    assert len(peer.seen) == 1


async def test_a_job_with_a_tenant_may_not_deliver_to_a_platform_notification_url() -> None:
    async with webhook_receiver() as peer, \
            service(PAYMENT_WEBHOOK_URL=peer.url("/platform/payment"), **ALLOW) as svc:
        url = peer.url("/platform/payment")
        spellings = [url, url + "?forged=1", url + "/", url.replace("/platform/", "//platform/"),
                     url.replace("/payment", "/%70ayment")]
        forged = [await deliver(svc, {"url": u, "event": "payment.completed"}, tenant_id="t1")
                  for u in spellings]
        # the same host is fine for other endpoints (a callback receiver beside it, say)
        beside = await deliver(svc, {"url": peer.url("/platform/callbacks"), "event": "x"},
                               tenant_id="t1")
        # the service's own delivery (no tenant) goes through
        own = await deliver(svc, {"url": url, "event": "payment.completed"})
    assert [(j.state, j.errors[0].code) for j in forged] == \
        [(FAILED, "reserved_destination")] * len(spellings)
    assert beside.state is COMPLETED and own.state is COMPLETED, own.errors
    assert [s.path for s in peer.seen] == ["/platform/callbacks", "/platform/payment"]


async def test_the_platforms_own_urls_are_reached_without_allowing_private_addresses() -> None:
    async with webhook_receiver() as peer, \
            service(PAYMENT_WEBHOOK_URL=peer.url("/platform/payment")) as svc:
        own = await deliver(svc, {"url": peer.url("/platform/payment"), "event": "x"})
        other = await deliver(svc, {"url": peer.url("/platform/other"), "event": "x"})
    # the operator's notification URLs are trusted like Twilio's endpoint; nothing else is
    assert own.state is COMPLETED, own.errors
    assert other.state is FAILED and other.errors[0].code == "destination_refused"
    assert [s.path for s in peer.seen] == ["/platform/payment"]


async def test_a_control_character_in_a_header_field_is_refused() -> None:
    async with webhook_receiver() as peer, service(**ALLOW) as svc:
        done = await deliver(svc, hook(peer, event="order.paid\r\nX-Injected: 1"))
    assert done.state is FAILED and done.errors[0].code == "invalid_header"
    assert peer.seen == []


# --- configuration ------------------------------------------------------------------------------


async def test_not_configured_without_a_signing_secret() -> None:
    async with run_service(FACTORY, {}) as svc:
        status = svc.integrations.status()["webhooks"]
        job = await svc.engine.enqueue("webhook-deliver", {"url": "https://example.com/h",
                                                           "event": "x"})
        done = await svc.engine.wait(job.id, timeout=5)
    assert status.status is Readiness.NOT_CONFIGURED
    assert status.message is not None and "WEBHOOK_SIGNING_SECRET" in status.message
    assert done.state is FAILED and done.errors[0].code == "not_configured"


async def test_an_invalid_notification_url_stops_the_start() -> None:
    settings = load_settings({"TICKQ_DATABASE_URL": "memory://",
                              "WEBHOOK_SIGNING_SECRET": SECRET,
                              "NFT_WEBHOOK_URL": "ftp://files.example/nft"})
    integration = WebhooksIntegration(settings, tickq.Engine(tickq.open_store("memory://")))
    assert integration.configured
    with pytest.raises(ConfigError, match="NFT_WEBHOOK_URL: the URL must be http or https"):
        await integration.start()
    await integration.close()


def test_a_signature_covers_the_exact_bytes() -> None:
    body = orjson.dumps({"id": "d", "event": "e", "createdAt": "c", "data": {"a": 1}})
    t = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    header = sign(SECRET, body, t)
    assert verify_signature(SECRET, header, body, 5, t)
    assert not verify_signature(SECRET, header, body + b" ", 5, t)
    assert not verify_signature(SECRET, header, orjson.dumps(orjson.loads(body),
                                                             option=orjson.OPT_INDENT_2), 5, t)
