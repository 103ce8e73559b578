"""Alert channels against real receivers on 127.0.0.1: the admin webhook (an aiohttp server
that verifies the signature), Twilio's Messages API (an aiohttp server that checks basic auth
and the form fields) and SMTP (aiosmtpd). Deliveries run as the service runs them: jobs of a
live engine, processed by the integrations the service builds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from processors.http_peer import (
    SECRET,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    Answer,
    Peer,
    arrived,
    twilio,
    twilio_form,
    webhook_receiver,
)
from processors.smtp_peer import HOST, Mailbox, SmtpPeer

import tickq
from tickq.engine.monitor import AlertType, Breach, Severity
from tickq.http import make_app
from tickq.http.auth import mint_token
from tickq.monitoring import MonitorService
from tickq.processors import build_integrations
from tickq.settings import load_settings
from tickq.storage.base import NewAlert

JWT = "tickq-test-secret-that-is-long-enough-0123456789"
ON_CALL = "+14155550100"
ADMIN = "ops@tickq.test"
FACTORIES = ("tickq.processors.webhooks:integration", "tickq.processors.mail:integration",
             "tickq.processors.sms:integration")


@dataclass
class Peers:
    hook: Peer
    sms: Peer
    mail: Mailbox
    smtp: SmtpPeer

    def env(self) -> dict[str, str]:
        return {"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://",
                "WEBHOOK_SIGNING_SECRET": SECRET, "ADMIN_WEBHOOK_URL": self.hook.url("/ops"),
                "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "TWILIO_FROM_NUMBER": TWILIO_FROM, "TWILIO_API_BASE": self.sms.url(""),
                "ALERT_SMS_TO": ON_CALL, "ADMIN_EMAIL": ADMIN, "EMAIL_HOST": HOST,
                "EMAIL_PORT": str(self.smtp.port), "EMAIL_TLS": "none",
                "EMAIL_FROM": "tickq@tickq.test", "WEBHOOK_TIMEOUT_S": "5"}


@asynccontextmanager
async def peers() -> AsyncIterator[Peers]:
    mailbox = Mailbox()
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(webhook_receiver())
        sms = await stack.enter_async_context(twilio())
        smtp = await stack.enter_async_context(SmtpPeer(mailbox))
        yield Peers(hook, sms, mailbox, smtp)


class Counted:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, severity: str, alert_type: str, channel: str) -> None:
        self.calls.append((severity, alert_type, channel))


@asynccontextmanager
async def service(env: Mapping[str, str], counted: Counted) -> AsyncIterator[MonitorService]:
    """An engine with the webhook, email and SMS integrations, started as the service starts
    them, and its monitor (deliveries tracked)."""
    settings = load_settings(dict(env))
    engine = tickq.Engine(tickq.open_store("memory://"), shutdown_grace_s=1.0)
    integrations = build_integrations(settings, engine, factories=FACTORIES)
    integrations.install()
    await integrations.start()
    monitor = MonitorService.from_settings(settings, engine, count=counted)
    try:
        await engine.start()
        monitor.tracker.start()
        try:
            yield monitor
        finally:
            await monitor.stop()
            await engine.stop()
    finally:
        await integrations.close()


def depth_breach(severity: Severity = Severity.CRITICAL) -> Breach:
    return Breach(queue="money", alert_type=AlertType.QUEUE_DEPTH, severity=severity,
                  value=75.0, threshold=50.0,
                  message="CRITICAL: Money queue has 75 jobs waiting (threshold 50)")


async def channels_become(monitor: MonitorService, alert_id: int, expected: Mapping[str, str],
                          timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        await monitor.tracker.settled()
        alert = await monitor.engine.store.alert_get(alert_id)
        assert alert is not None
        got = dict(alert.channels)
        if all(got.get(k) == v for k, v in expected.items()):
            return got
        assert time.monotonic() < deadline, f"channels stayed {got}, expected {expected}"
        await asyncio.sleep(0.02)


async def test_a_critical_alert_reaches_the_webhook_the_phone_and_the_mailbox() -> None:
    counted = Counted()
    async with peers() as p, service(p.env(), counted) as monitor:
        raised = await monitor.raise_alert(depth_breach())
        alert = raised.alert
        assert {c: r.status.value for c, r in raised.channels.items()} == {
            "log": "logged", "stored": "stored", "webhook": "queued", "email": "queued",
            "sms": "queued"}

        [hook] = await arrived(p.hook, 1)
        [sms] = await arrived(p.sms, 1)
        got = await channels_become(monitor, alert.id, {"webhook": "sent", "email": "sent",
                                                        "sms": "sent"})
        assert got["log"] == "logged" and got["stored"] == "stored"

        # The receiver verified X-Tickq-Signature over the raw body before answering 200.
        body = hook.json()
        assert hook.path == "/ops" and body["event"] == "queue.alert"
        assert body["id"] == f"alert-{alert.id}-webhook"
        assert body["data"] == {"alertId": alert.id, "severity": "critical",
                                "type": "queue_depth", "message": alert.message,
                                "queue": "money", "metricValue": 75.0, "thresholdValue": 50.0,
                                "createdAt": body["data"]["createdAt"], "test": False}
        form = twilio_form(sms)
        assert (form["To"], form["From"]) == (ON_CALL, TWILIO_FROM)
        assert "CRITICAL" in form["Body"] and "Money queue has 75 jobs waiting" in form["Body"]
        assert sms.headers["I-Twilio-Idempotency-Token"] == f"alert-{alert.id}-sms"
        [mail] = p.mail.accepted
        assert mail.rcpt_tos == [ADMIN]
        assert mail.message["Subject"] == "[tickq CRITICAL] money queue: queue depth"
        assert "Money queue has 75 jobs waiting" in mail.part("plain")
        assert sorted(counted.calls) == sorted(
            ("critical", "queue_depth", c) for c in ("log", "stored", "webhook", "email", "sms"))

        # Delivering the same alert again enqueues nothing new: one job per alert and channel.
        again = await monitor.channels.deliver(alert, monitor.channels.plan("critical"))
        assert {c: r.job_id for c, r in again.items()} == {
            c: r.job_id for c, r in raised.channels.items() if c in again}
        await asyncio.sleep(0.1)
        assert (len(p.hook.seen), len(p.sms.seen), len(p.mail.received)) == (1, 1, 1)


async def test_sms_is_for_critical_alerts_only() -> None:
    counted = Counted()
    async with peers() as p, service(p.env(), counted) as monitor:
        raised = await monitor.raise_alert(depth_breach(Severity.WARNING))
        assert raised.channels["sms"].status.value == "skipped"
        await channels_become(monitor, raised.alert.id, {"webhook": "sent", "email": "sent"})
        assert p.sms.seen == []
        assert ("warning", "queue_depth", "sms") not in counted.calls


async def test_a_receiver_that_refuses_the_alert_is_recorded_as_failed() -> None:
    async with peers() as p, service(p.env(), Counted()) as monitor:
        p.hook.answers.append(Answer(410, {"error": "gone"}))  # permanent: no retry
        raised = await monitor.raise_alert(depth_breach())
        got = await channels_become(monitor, raised.alert.id, {"webhook": "failed",
                                                              "email": "sent", "sms": "sent"})
        assert got["webhook"] == "failed"
        failed = await monitor.engine.get(raised.channels["webhook"].job_id or "")
        assert failed is not None and failed.state is tickq.JobState.FAILED


async def test_deliveries_that_ended_unwatched_are_caught_up() -> None:
    async with peers() as p, service(p.env(), Counted()) as monitor:
        await monitor.tracker.close()  # nobody listens while the deliveries run
        raised = await monitor.raise_alert(depth_breach())
        for result in raised.channels.values():
            if result.job_id is not None:
                await monitor.engine.wait(result.job_id, timeout=10)
        alert = await monitor.engine.store.alert_get(raised.alert.id)
        assert alert is not None and alert.channels["email"] == "queued"

        assert await monitor.tracker.reconcile([alert]) == 3
        fresh = await monitor.engine.store.alert_get(alert.id)
        assert fresh is not None
        assert {c: fresh.channels[c] for c in ("webhook", "email", "sms")} == {
            "webhook": "sent", "email": "sent", "sms": "sent"}


async def test_post_alerts_test_reports_every_channel_delivered() -> None:
    async with peers() as p:
        settings = load_settings({**p.env(), "JWT_SECRET": JWT,
                                  "API_RATE_LIMIT_ENABLED": "false"})
        engine = tickq.Engine(tickq.open_store("memory://"), shutdown_grace_s=1.0)
        app = make_app(settings, engine)
        headers = {"Authorization": "Bearer " + mint_token(
            JWT, role="admin", tenant_id="t1", user_id="admin-1", venues=(), ttl_s=600)}
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/api/v1/queue/alerts/test",
                                     json={"severity": "info", "waitS": 10}, headers=headers)
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            assert body["status"] == "sent" and body["message"] == "Test alert sent successfully"
            channels = body["channels"]
            assert {c: v["status"] for c, v in channels.items()} == {
                "log": "logged", "stored": "stored", "webhook": "sent", "email": "sent",
                "sms": "sent"}
            # A test alert goes out by SMS whatever its severity.
            [sms] = await arrived(p.sms, 1)
            assert "TEST" in twilio_form(sms)["Body"]
            [hook] = await arrived(p.hook, 1)
            assert hook.json()["data"]["test"] is True
            assert p.mail.accepted[0].message["Subject"] == "[tickq INFO] Test alert"


async def test_deliveries_never_enqueued_are_sent_when_the_monitor_starts() -> None:
    async with peers() as p, service(p.env(), Counted()) as monitor:
        # As a process that stopped between storing the alert and enqueueing its deliveries
        # leaves it.
        alert = await monitor.engine.store.alert_insert(NewAlert(
            severity="critical", alert_type="queue_depth", message="left behind",
            queue_name="money", created_at=monitor.engine.clock.now(),
            channels={"log": "logged", "stored": "stored", "webhook": "pending",
                      "email": "not_configured", "sms": "skipped"}))
        monitor.interval_s = 3600
        await monitor.start()
        [hook] = await arrived(p.hook, 1)
        assert hook.json()["data"]["message"] == "left behind"
        got = await channels_become(monitor, alert.id, {"webhook": "sent"})
        assert (got["email"], got["sms"]) == ("not_configured", "skipped")
        assert p.mail.received == [] and p.sms.seen == []
