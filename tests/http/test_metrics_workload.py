"""Business metrics after a known workload, run by the service's own integrations against real
peers on 127.0.0.1: Stripe (localstripe, in a child process), an SMTP server (aiosmtpd), a
webhook receiver (aiohttp) and a Solana chain (LiteSVM), then read back from `GET /metrics`
with prometheus-client's text parser.

localstripe is one module-level aiohttp application bound to the first event loop it runs on;
the Stripe tests in tests/processors own that loop, so here it runs in a child process of its
own, listening on 127.0.0.1 and writing nothing to disk.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from httpkit import SECRET, Api
from prometheus_client.parser import text_string_to_metric_families
from solders.keypair import Keypair

import tickq
from tickq.engine.engine import Engine
from tickq.http import make_app
from tickq.processors import FACTORIES, Integrations, load_factory
from tickq.processors.nft import SolanaIntegration
from tickq.processors.solana_client import LiteSvmClient
from tickq.settings import load_settings
from tickq.storage.memory import MemoryStore

# The real peers of the processor tests (SMTP server, signed-webhook receiver).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "processors"))
from http_peer import SECRET as WEBHOOK_SECRET
from http_peer import Answer, Peer, webhook_receiver
from smtp_peer import Mailbox, SmtpPeer

STRIPE_KEY = "sk_test_tickq_metrics_0123456789"
LAMPORTS = 1_000_000_000
COMPLETED, FAILED = tickq.JobState.COMPLETED, tickq.JobState.FAILED
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_LOCALSTRIPE = """
import asyncio, warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import localstripe.resources, localstripe.server
from aiohttp import web
localstripe.resources.store.dump_to_disk = lambda: None

async def main():
    runner = web.AppRunner(localstripe.server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@asynccontextmanager
async def localstripe() -> AsyncIterator[str]:
    """localstripe in a child process on 127.0.0.1; its base URL."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LOCALSTRIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip().isdigit(), f"localstripe did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 10)


@asynccontextmanager
async def platform(stripe_url: str, smtp_port: int, chain: LiteSvmClient,
                   payer: Keypair) -> AsyncIterator[tuple[Api, SolanaIntegration]]:
    """The app with every integration made as the service makes it, Solana over `chain`."""
    settings = load_settings({
        "TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://", "JWT_SECRET": SECRET,
        "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_API_BASE": stripe_url, "STRIPE_TIMEOUT_S": "5",
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port), "EMAIL_TLS": "none",
        "EMAIL_FROM": "tickets@tickq.test", "WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_TIMEOUT_S": "5", "OUTBOUND_ALLOW_PRIVATE": "true"})
    engine = Engine(MemoryStore(), shutdown_grace_s=1.0)
    solana = SolanaIntegration(settings, client=chain, payer=payer, poll_interval_s=0.01)
    made = [load_factory(path)(settings, engine) for path in FACTORIES
            if not path.startswith("tickq.processors.nft:")]
    app = make_app(settings, engine, integrations=Integrations(engine, [*made, solana]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Api(client, engine), solana


async def scrape(api: Api) -> Samples:
    resp = await api.client.get("/metrics")
    assert resp.status == 200, await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def three_d_secure_card(stripe_url: str) -> str:
    """A payment method that needs customer authentication (Stripe's 3-D Secure test card)."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{stripe_url}/v1/payment_methods",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            data={"type": "card", "card[number]": "4000002500003155", "card[exp_month]": "12",
                  "card[exp_year]": "2030", "card[cvc]": "123"}) as resp:
        assert resp.status == 200, await resp.text()
        card: str = (await resp.json())["id"]
        return card


def payment(amount: int, currency: str = "USD", method: str = "pm_card_visa") -> dict[str, Any]:
    return {"userId": "u1", "venueId": "v1", "eventId": "e1", "amount": amount,
            "currency": currency, "paymentMethod": method}


ALERT = {"title": "Queue depth", "message": "75 jobs waiting", "severity": "critical",
         "queue": "money", "jobType": "payment-process", "details": {"waiting": 75}}


async def run(api: Api, type_name: str, data: dict[str, Any]) -> tickq.Job:
    job = await api.engine.enqueue(type_name, data, tenant_id="t1")
    return await api.engine.wait(job.id, timeout=15)


@pytest.mark.asyncio
async def test_a_known_workload_gives_exact_business_metrics() -> None:
    chain = LiteSvmClient()
    payer = Keypair()
    chain.airdrop(payer.pubkey(), 3 * LAMPORTS)
    mailbox = Mailbox()
    base = webhook_receiver()
    receiver = Peer(lambda seen: Answer(410, {"error": "gone"}) if seen.path == "/hooks/gone"
                    else base.check(seen), base.success)
    async with localstripe() as stripe_url, SmtpPeer(mailbox) as smtp, receiver, platform(
            stripe_url, smtp.port, chain, payer) as (api, solana):
        # Payments: 3 completed (2 succeeded, 1 waiting for authentication), 1 declined.
        paid = await run(api, "payment-process", payment(1000))
        paid_eur = await run(api, "payment-process", payment(2500, "eur"))
        pending = await run(api, "payment-process",
                            payment(700, method=await three_d_secure_card(stripe_url)))
        declined = await run(api, "payment-process",
                             payment(999, method="pm_card_chargeCustomerFail"))
        assert [j.state for j in (paid, paid_eur, pending, declined)] == [
            COMPLETED, COMPLETED, COMPLETED, FAILED]
        assert pending.result["status"] == "pending"
        # Refunds: part of the first payment, all of the second (the amount comes from Stripe).
        part = await run(api, "refund-process", {
            "transactionId": paid.result["paymentIntentId"], "amount": 400, "userId": "u1",
            "venueId": "v1"})
        whole = await run(api, "refund-process", {
            "transactionId": paid_eur.result["paymentIntentId"], "userId": "u1",
            "venueId": "v1"})
        assert (part.state, whole.state) == (COMPLETED, COMPLETED), (part.errors, whole.errors)

        # Emails: the first recipient is refused (550), the second accepted.
        mailbox.rcpt_replies.append("550 5.1.1 Mailbox unavailable")
        bounced = await run(api, "send-email", {"to": "gone@example.com",
                                                "template": "admin-alert", "data": ALERT})
        sent = await run(api, "send-email", {"to": "ops@example.com",
                                             "template": "admin-alert", "data": ALERT})
        assert (bounced.state, sent.state) == (FAILED, COMPLETED)

        # Webhooks: one delivered, one refused for good (410).
        delivered = await run(api, "webhook-deliver", {
            "url": receiver.url("/hooks/orders"), "event": "order.paid", "payload": {"o": 1}})
        gone = await run(api, "webhook-deliver", {
            "url": receiver.url("/hooks/gone"), "event": "order.refunded", "payload": {"o": 1}})
        assert (delivered.state, gone.state) == (COMPLETED, FAILED)

        # NFTs: one ticket minted to its owner's custodial wallet, then moved to a wallet.
        minted = await run(api, "nft-mint", {"eventId": "e1", "ticketId": "t-1",
                                             "userId": "u1", "venueId": "v1"})
        assert minted.state is COMPLETED, minted.errors
        moved = await run(api, "nft-transfer", {
            "mintAddress": minted.result["mintAddress"], "fromUserId": "u1", "toUserId": "u2",
            "toWallet": str(Keypair().pubkey()), "ticketId": "t-1"})
        assert moved.state is COMPLETED, moved.errors
        balance = await solana.balance_sol()
        s = await scrape(api)  # the first scrape: the wallet is read from the chain now

    assert named(s, "payments_processed_total") == {
        frozenset({("currency", "USD"), ("status", "succeeded")}): 1,
        frozenset({("currency", "EUR"), ("status", "succeeded")}): 1,
        frozenset({("currency", "USD"), ("status", "pending")}): 1,
        frozenset({("currency", "USD"), ("status", "failed")}): 1}
    assert named(s, "payment_amount_total_cents") == {
        frozenset({("currency", "USD"), ("status", "succeeded")}): 1000,
        frozenset({("currency", "EUR"), ("status", "succeeded")}): 2500,
        frozenset({("currency", "USD"), ("status", "pending")}): 700}
    assert named(s, "refunds_processed_total") == {
        frozenset({("currency", "USD"), ("status", "succeeded")}): 1,
        frozenset({("currency", "EUR"), ("status", "succeeded")}): 1}
    assert named(s, "refund_amount_total_cents") == {
        frozenset({("currency", "USD"), ("status", "succeeded")}): 400,
        frozenset({("currency", "EUR"), ("status", "succeeded")}): 2500}
    assert named(s, "emails_sent_total") == {frozenset({("type", "admin-alert")}): 1}
    assert named(s, "emails_failed_total") == {frozenset({("type", "admin-alert")}): 1}
    assert named(s, "webhooks_sent_total") == {frozenset({("event", "order.paid")}): 1}
    assert named(s, "webhooks_failed_total") == {frozenset({("event", "order.refunded")}): 1}
    assert named(s, "nfts_minted_total") == {frozenset({("status", "succeeded")}): 1}
    assert named(s, "nft_transfers_total") == {frozenset({("status", "succeeded")}): 1}
    assert value(s, "solana_wallet_balance_sol") == balance
    assert 2.99 < balance < 3.0  # fees and the rent of the accounts the mint created
    money = {"queue_name": "money", "job_type": "payment-process"}
    assert value(s, "job_results_total", **money, result="completed") == 3
    assert value(s, "job_results_total", **money, result="failed") == 1
    assert value(s, "queue_jobs_processed_total") == 12
    assert value(s, "queue_jobs_failed_total", queue="money", reason="permanent") == 1
