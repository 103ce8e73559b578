"""The email integration against a real SMTP server (aiosmtpd on 127.0.0.1), through the engine.

Each test starts its own server with a `Mailbox` that stores what it receives and answers as the
test scripted, builds the integration from settings through the factory path the service uses,
enqueues `send-email` jobs and looks at what arrived and how each job ended. Retries are made
fast (10 ms backoff) so that a three-attempt scenario takes milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from smtp_peer import (
    HOST,
    Credentials,
    Mailbox,
    SilentServer,
    SmtpPeer,
    closed_port,
    make_certificate,
)

import tickq
from tickq.engine.breaker import BreakerStatus
from tickq.errors import ConfigError
from tickq.processors import Integrations, Readiness, build_integrations
from tickq.processors.mail import EmailIntegration
from tickq.processors.mail_smtp import POOL_SIZE, PROVIDER
from tickq.settings import load_settings

FAST = tickq.BackoffPolicy(kind=tickq.BackoffKind.FIXED, base_s=0.01, cap_s=0.01, jitter=False)
FACTORY = "tickq.processors.mail:integration"
COMPLETED, FAILED = tickq.JobState.COMPLETED, tickq.JobState.FAILED

#: data for each template, and text each rendering must show
TEMPLATES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "payment-confirmation": (
        {"customerName": "Ada", "eventName": "Night Owls Live", "amount": 123456,
         "currency": "usd", "transactionId": "pi_3Nx", "eventDate": "2026-03-14 20:00",
         "venueName": "The Hall", "ticketCount": 2},
        ["Ada", "Night Owls Live", "$1,234.56", "pi_3Nx", "2026-03-14 20:00", "The Hall"]),
    "refund-confirmation": (
        {"customerName": "Grace", "amount": 4550, "currency": "EUR", "transactionId": "pi_9Q",
         "refundId": "re_77", "eventName": "Jazz Brunch", "reason": "event cancelled"},
        ["Grace", "€45.50", "pi_9Q", "re_77", "Jazz Brunch", "event cancelled"]),
    "nft-minted": (
        {"customerName": "Alan", "eventName": "Chess Finals", "ticketId": "tkt-42",
         "seatId": "B-12", "mintAddress": "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
         "cluster": "devnet"},
        ["Alan", "Chess Finals", "tkt-42", "B-12", "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
         "explorer.solana.com/address/7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"]),
    "admin-alert": (
        {"title": "Payment failures", "message": "15 payments failed in 5 minutes",
         "severity": "critical", "queue": "money", "jobType": "payment-process",
         "details": {"failed": 15, "window": "5m"}},
        ["Payment failures", "15 payments failed in 5 minutes", "CRITICAL", "money",
         "payment-process", "window"]),
}
SUBJECTS = {
    "payment-confirmation": "Your order for Night Owls Live is confirmed",
    "refund-confirmation": "Your refund of €45.50 is on its way",
    "nft-minted": "Your ticket for Chess Finals is ready",
    "admin-alert": "[tickq CRITICAL] Payment failures",
}


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    return {"TICKQ_ENV": "test", "EMAIL_HOST": HOST, "EMAIL_PORT": str(port),
            "EMAIL_TLS": "none", "EMAIL_FROM": "tickets@tickq.test", **extra}


@asynccontextmanager
async def email_engine(env: Mapping[str, str]) -> AsyncIterator[tuple[tickq.Engine,
                                                                       Integrations]]:
    """An engine with the email integration installed from `env` and started as the service
    starts it (integrations first, engine second; closed in reverse)."""
    settings = load_settings(dict(env))
    engine = tickq.Engine(tickq.open_store("memory://"), shutdown_grace_s=1.0)
    email_type = engine.registry.job_type("send-email")
    engine.registry.add_type(dataclasses.replace(email_type, backoff=FAST), replace=True)
    integrations = build_integrations(settings, engine, factories=(FACTORY,))
    integrations.install()
    await integrations.start()
    try:
        await engine.start()
        try:
            yield engine, integrations
        finally:
            await engine.stop()
    finally:
        await integrations.close()


async def send(engine: tickq.Engine, to: str, template: str, data: Mapping[str, Any],
               **extra: Any) -> tickq.Job:
    """Enqueue one email and return its final record (bounded wait)."""
    job = await engine.enqueue("send-email", {"to": to, "template": template,
                                              "data": dict(data), **extra})
    return await engine.wait(job.id, timeout=5)


def breaker(engine: tickq.Engine) -> BreakerStatus:
    return engine.providers.breakers.get(PROVIDER).status(engine.clock.now())


# --- what arrives -----------------------------------------------------------------------------


@pytest.mark.parametrize("template", list(TEMPLATES))
async def test_each_template_arrives_with_both_parts_headers_and_rendered_values(
        template: str) -> None:
    data, expected = TEMPLATES[template]
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", template, data)

    assert done.state is COMPLETED, done.errors
    [got] = mailbox.received
    msg = got.message
    assert got.mail_from == "tickets@tickq.test" and got.rcpt_tos == ["ada@example.com"]
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["From"] == "tickets@tickq.test" and msg["To"] == "ada@example.com"
    assert msg["Subject"] == SUBJECTS[template]
    assert msg["Date"] is not None and msg["Date"].datetime.tzinfo is not None
    assert msg["Message-ID"] == f"<tickq.{done.id}@tickq.test>"
    assert msg["X-Tickq-Job-Id"] == done.id
    text, html = got.part("plain"), got.part("html")
    for value in expected:
        assert value in text, f"{value!r} missing from the text part"
        assert value in html, f"{value!r} missing from the HTML part"
    assert html.lstrip().startswith("<!DOCTYPE html>")

    result = done.result
    assert result["transport"] == "smtp" and result["template"] == template
    assert result["messageId"] == msg["Message-ID"]
    assert result["accepted"] == ["ada@example.com"] and result["refused"] == {}
    assert result["reply"] == "2.0.0 Ok: queued as Q1"
    assert result["sentAt"].endswith("Z")


async def test_the_spec_spellings_of_template_names_are_accepted() -> None:
    data = TEMPLATES["payment-confirmation"][0]
    spellings = ["PaymentConfirmation", "payment_confirmation", "Payment Confirmation",
                 "PAYMENT_CONFIRMATION"]
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        jobs = [await send(engine, f"u{i}@example.com", name, data)
                for i, name in enumerate(spellings)]
        nft = await send(engine, "nft@example.com", "nft-minted-confirmation",
                         TEMPLATES["nft-minted"][0])
    assert [j.state for j in jobs] == [COMPLETED] * len(spellings)
    assert {j.result["template"] for j in jobs} == {"payment-confirmation"}
    assert nft.state is COMPLETED and nft.result["template"] == "nft-minted"
    assert len(mailbox.accepted) == len(spellings) + 1


async def test_user_input_is_escaped_in_html_and_left_readable_in_text() -> None:
    hostile = '<script>alert("x")</script> & <b>Friends</b>'
    data = {**TEMPLATES["payment-confirmation"][0], "eventName": hostile,
            "customerName": "O'Brien <admin@evil.test>"}
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "payment-confirmation", data)
    assert done.state is COMPLETED, done.errors
    [got] = mailbox.received
    html, text = got.part("html"), got.part("plain")
    assert "<script>" not in html and "<b>Friends" not in html
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Friends&lt;/b&gt;"
    assert escaped in html
    assert "O&#39;Brien &lt;admin@evil.test&gt;" in html
    assert hostile in text and "O'Brien <admin@evil.test>" in text
    # The subject carries the text as typed (headers are not HTML). It is long enough to be
    # folded right after "Subject:", which Python's parser hands back as a leading space.
    assert got.message["Subject"].strip() == f"Your order for {hostile} is confirmed"


async def test_a_subject_given_by_the_job_is_used_as_text_not_as_a_template() -> None:
    data = TEMPLATES["refund-confirmation"][0]
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "refund-confirmation", data,
                          subject="Refund {{ amount }}\r\nBcc: victim@example.com",
                          **{"from": "billing@tickq.test"})
    assert done.state is COMPLETED, done.errors
    [got] = mailbox.received
    assert got.message["Subject"] == "Refund {{ amount }} Bcc: victim@example.com"
    assert got.message["Bcc"] is None and got.rcpt_tos == ["ada@example.com"]
    assert got.mail_from == "billing@tickq.test" and got.message["From"] == "billing@tickq.test"
    assert got.message["Message-ID"] == f"<tickq.{done.id}@tickq.test>"


# --- failures ---------------------------------------------------------------------------------


async def test_a_451_reply_is_retried_with_the_same_message_id_and_spares_the_breaker() -> None:
    mailbox = Mailbox()
    mailbox.data_replies.append("451 4.3.0 Temporary local problem, try again")
    data = TEMPLATES["nft-minted"][0]
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "nft-minted", data)
        status = breaker(engine)
    assert done.state is COMPLETED and done.attempts == 2
    [error] = done.errors
    assert error.code == "smtp_451" and error.type == "RetryableError"
    assert "451 4.3.0 Temporary local problem" in error.message
    refused, delivered = mailbox.received
    assert not refused.accepted and delivered.accepted
    # A receiver that kept the first copy can drop the second by its Message-ID.
    assert refused.message["Message-ID"] == delivered.message["Message-ID"]
    assert status["window_failures"] == 0 and status["consecutive_failures"] == 0


async def test_a_greylisted_recipient_450_is_retried() -> None:
    mailbox = Mailbox()
    mailbox.rcpt_replies.append("450 4.2.0 Greylisted, please try again later")
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
        status = breaker(engine)
    assert done.state is COMPLETED and done.attempts == 2
    assert [e.code for e in done.errors] == ["smtp_450"]
    assert "refused recipient ada@example.com: 450" in done.errors[0].message
    assert len(mailbox.accepted) == 1 and status["window_failures"] == 0


@pytest.mark.parametrize(("stage", "reply", "code", "words"), [
    ("rcpt", "550 5.1.1 Mailbox unavailable", "smtp_550", "refused recipient ada@example.com"),
    ("data", "554 5.7.1 Message rejected as spam", "smtp_554", "refused the message"),
    ("data", "553 5.1.8 Sender address rejected", "smtp_553", "refused the message"),
])
async def test_a_5xx_reply_sends_the_job_to_the_dead_letter_queue_with_its_code(
        stage: str, reply: str, code: str, words: str) -> None:
    mailbox = Mailbox()
    (mailbox.rcpt_replies if stage == "rcpt" else mailbox.data_replies).append(reply)
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
        status = breaker(engine)
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == code and error.type == "PermanentError"
    assert reply in error.message and words in error.message
    assert mailbox.accepted == []
    assert status["window_failures"] == 0


async def test_a_server_that_is_down_is_retried_and_counted_against_the_breaker() -> None:
    async with email_engine(smtp_env(closed_port())) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
        status = breaker(engine)
    assert done.state is FAILED and done.attempts == done.max_attempts == 3
    assert [e.code for e in done.errors] == ["smtp_connection"] * 3
    assert all(e.type == "ProviderError" for e in done.errors)
    assert "SMTP connection failed" in done.errors[0].message
    assert status["consecutive_failures"] == 3 and status["window_failures"] == 3


async def test_a_server_that_never_answers_times_out_and_counts_against_the_breaker() -> None:
    async with SilentServer() as silent, email_engine(
            smtp_env(silent.port, WEBHOOK_TIMEOUT_S="0.2")) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
        status = breaker(engine)
    assert done.state is FAILED and done.attempts == 3
    assert [e.code for e in done.errors] == ["smtp_timeout"] * 3
    assert "did not answer within 0.2s" in done.errors[0].message
    assert status["consecutive_failures"] == 3


async def test_an_unknown_template_goes_to_the_dead_letter_queue_naming_the_known_ones() -> None:
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "welcome-back", {"name": "Ada"})
        traversal = await send(engine, "bob@example.com", "../_layout", {})
    for job in (done, traversal):
        assert job.state is FAILED and job.attempts == 1
        [error] = job.errors
        assert error.code == "unknown_template"
        assert "admin-alert, nft-minted, payment-confirmation, refund-confirmation" in (
            error.message)
    assert "'welcome-back'" in done.errors[0].message
    assert mailbox.received == [] and peer.connections == 0


async def test_a_missing_template_variable_goes_to_the_dead_letter_queue_naming_it() -> None:
    data = dict(TEMPLATES["payment-confirmation"][0])
    del data["transactionId"]
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        done = await send(engine, "ada@example.com", "payment-confirmation", data)
        bad_amount = await send(engine, "bob@example.com", "payment-confirmation",
                                {**TEMPLATES["payment-confirmation"][0], "amount": 12.5})
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "template_data"
    assert "'transactionId' is undefined" in error.message
    assert "payment-confirmation" in error.message
    assert bad_amount.state is FAILED and bad_amount.errors[0].code == "template_data"
    assert "whole number of cents, got 12.5" in bad_amount.errors[0].message
    assert mailbox.received == []


# --- login and TLS ----------------------------------------------------------------------------


async def test_smtp_auth_logs_in_with_the_configured_user() -> None:
    mailbox = Mailbox()
    mailbox.require_auth = True
    creds = Credentials("mailer", "s3cret-pass")
    env = {"EMAIL_USER": "mailer", "EMAIL_PASSWORD": "s3cret-pass"}
    async with SmtpPeer(mailbox, credentials=creds) as peer, email_engine(
            smtp_env(peer.port, **env)) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert done.state is COMPLETED, done.errors
    [got] = mailbox.received
    assert got.login == "mailer" and got.accepted


async def test_a_refused_login_goes_to_the_dead_letter_queue_as_smtp_auth() -> None:
    mailbox = Mailbox()
    mailbox.require_auth = True
    creds = Credentials("mailer", "s3cret-pass")
    env = {"EMAIL_USER": "mailer", "EMAIL_PASSWORD": "wrong"}
    async with SmtpPeer(mailbox, credentials=creds) as peer, email_engine(
            smtp_env(peer.port, **env)) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
        status = breaker(engine)
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "smtp_auth" and "535" in error.message and "EMAIL_USER" in error.message
    assert "wrong" not in error.message
    assert mailbox.received == [] and status["window_failures"] == 0


def test_a_user_without_a_password_is_not_configured() -> None:
    settings = load_settings(smtp_env(2525, EMAIL_USER="mailer"))
    assert EmailIntegration(settings, tickq.SystemClock()).missing == ["EMAIL_PASSWORD"]


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_tls_modes_encrypt_and_verify_the_server_certificate(
        mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = make_certificate(tmp_path)
    # The client trusts the system's CA list; point it at the test certificate instead.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert.cert_file))
    mailbox = Mailbox()
    server_tls = cert.server_context()
    peer = (SmtpPeer(mailbox, starttls=server_tls) if mode == "starttls"
            else SmtpPeer(mailbox, implicit_tls=server_tls))
    async with peer, email_engine(smtp_env(peer.port, EMAIL_TLS=mode)) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert done.state is COMPLETED, done.errors
    assert len(mailbox.accepted) == 1


async def test_an_untrusted_certificate_is_refused_without_retrying(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path)  # not trusted: SSL_CERT_FILE is not pointed at it
    mailbox = Mailbox()
    async with SmtpPeer(mailbox, starttls=cert.server_context()) as peer, email_engine(
            smtp_env(peer.port, EMAIL_TLS="starttls")) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "smtp_tls" and "CERTIFICATE_VERIFY_FAILED" in error.message
    assert mailbox.received == []


async def test_starttls_required_but_not_offered_never_sends_in_clear() -> None:
    mailbox = Mailbox()  # offers no STARTTLS
    async with SmtpPeer(mailbox) as peer, email_engine(
            smtp_env(peer.port, EMAIL_TLS="starttls")) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "smtp_unsupported" and "STARTTLS" in error.message
    assert mailbox.received == []


# --- connections ------------------------------------------------------------------------------


async def test_one_connection_carries_a_run_of_messages() -> None:
    mailbox = Mailbox()
    data = TEMPLATES["admin-alert"][0]
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        jobs = [await send(engine, f"ops{i}@example.com", "admin-alert", data) for i in range(5)]
    assert [j.state for j in jobs] == [COMPLETED] * 5
    assert len(mailbox.accepted) == 5 and peer.connections == 1


async def test_a_burst_is_spread_over_at_most_the_pool_size_of_connections() -> None:
    mailbox = Mailbox()
    data = TEMPLATES["admin-alert"][0]
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (engine, _):
        enqueued = await engine.enqueue_many([
            tickq.JobSpec(type="send-email", data={"to": f"ops{i}@example.com",
                                                   "template": "admin-alert", "data": data})
            for i in range(30)])
        jobs = await asyncio.wait_for(
            asyncio.gather(*(engine.wait(e.job.id) for e in enqueued)), 10)
    assert [j.state for j in jobs] == [COMPLETED] * 30
    assert len(mailbox.accepted) == 30 and 1 <= peer.connections <= POOL_SIZE


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry() -> None:
    mailbox = Mailbox()
    data = TEMPLATES["admin-alert"][0]
    async with SmtpPeer(mailbox, idle_timeout_s=0.1) as peer, email_engine(
            smtp_env(peer.port)) as (engine, _):
        first = await send(engine, "ops1@example.com", "admin-alert", data)
        await asyncio.sleep(0.3)  # the server drops the idle connection after 0.1 s
        second = await send(engine, "ops2@example.com", "admin-alert", data)
    assert first.state is COMPLETED and second.state is COMPLETED
    assert second.attempts == 1 and second.errors == []
    assert peer.connections == 2 and len(mailbox.accepted) == 2


# --- configuration ----------------------------------------------------------------------------


async def test_development_without_email_host_writes_the_message_to_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    env = {"TICKQ_ENV": "development", "EMAIL_FROM": "dev@tickq.test"}
    data = {**TEMPLATES["payment-confirmation"][0], "eventName": "<b>Gala</b>"}
    with caplog.at_level(logging.INFO, logger="tickq.processors.mail"):
        async with email_engine(env) as (engine, integrations):
            assert integrations.status()["email"].status is Readiness.READY
            done = await send(engine, "ada@example.com", "payment-confirmation", data)
    assert done.state is COMPLETED, done.errors
    result = done.result
    assert result["transport"] == "log" and result["delivered"] is False
    assert "sentAt" not in result and result["loggedAt"].endswith("Z")
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "email_logged"]
    fields: dict[str, Any] = vars(line)
    assert fields["to"] == ["ada@example.com"] and fields["from"] == "dev@tickq.test"
    assert fields["subject"] == "Your order for <b>Gala</b> is confirmed"
    assert fields["job_id"] == done.id and fields["message_id"] == result["messageId"]
    assert "<b>Gala</b>" in fields["text"] and "$1,234.56" in fields["text"]
    assert "&lt;b&gt;Gala&lt;/b&gt;" in fields["html"]


async def test_without_email_host_outside_development_jobs_fail_as_not_configured() -> None:
    env = {"TICKQ_ENV": "staging", "TICKQ_DATABASE_URL": "memory://"}
    async with email_engine(env) as (engine, integrations):
        status = integrations.status()["email"]
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert status.status is Readiness.NOT_CONFIGURED and "EMAIL_HOST" in (status.message or "")
    assert done.state is FAILED and done.attempts == 1
    [error] = done.errors
    assert error.code == "not_configured" and "EMAIL_HOST" in error.message


async def test_a_configured_integration_is_ready_and_names_its_provider() -> None:
    mailbox = Mailbox()
    async with SmtpPeer(mailbox) as peer, email_engine(smtp_env(peer.port)) as (_, integrations):
        status = integrations.status()["email"]
    assert status.status is Readiness.READY
    assert status.providers == {PROVIDER: "closed"}
    assert peer.connections == 0  # nothing is opened before there is something to send


async def test_email_from_may_carry_a_display_name_and_a_bad_one_is_refused() -> None:
    mailbox = Mailbox()
    env = smtp_env(0, EMAIL_FROM="TicketToken Box Office <box@tickq.test>")
    async with SmtpPeer(mailbox) as peer, email_engine(
            {**env, "EMAIL_PORT": str(peer.port)}) as (engine, _):
        done = await send(engine, "ada@example.com", "admin-alert", TEMPLATES["admin-alert"][0])
    assert done.state is COMPLETED, done.errors
    [got] = mailbox.received
    assert got.mail_from == "box@tickq.test"
    assert got.message["From"] == "TicketToken Box Office <box@tickq.test>"
    assert got.message["Message-ID"] == f"<tickq.{done.id}@tickq.test>"
    assert done.result["from"] == "box@tickq.test"
    with pytest.raises(ConfigError, match="EMAIL_FROM"):
        EmailIntegration(load_settings(smtp_env(25, EMAIL_FROM="not an address")),
                         tickq.SystemClock())


def test_the_factory_is_listed_for_the_service() -> None:
    from tickq.processors import FACTORIES

    assert FACTORY in FACTORIES
