"""Payments, refunds and payouts against localstripe (a Stripe-compatible server on 127.0.0.1),
called directly and through the engine."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import tickq
from tickq.clock import SystemClock
from tickq.engine.job import ErrorEntry, Job, append_error
from tickq.errors import PermanentError
from tickq.processors import Integrations, Readiness, build_integrations
from tickq.processors.payments import StripeIntegration
from tickq.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio(loop_scope="session")

FACTORY = "tickq.processors.payments:integration"
COMPLETED, FAILED = tickq.JobState.COMPLETED, tickq.JobState.FAILED


def interrupted(job: Job) -> Job:
    """The same job on its next attempt, after the previous one died mid-run."""
    retry = job.copy()
    retry.attempts = job.attempts + 1
    retry.errors_json = append_error(job.errors_json, ErrorEntry(
        attempt=job.attempts, type="Stalled", message="process stopped while the job was running",
        at=SystemClock().now(), code="stalled"))
    assert retry.needs_reconcile
    return retry


def engine_with(integration: StripeIntegration) -> tickq.Engine:
    engine = tickq.Engine(MemoryStore(), shutdown_grace_s=1.0)
    Integrations(engine, [integration]).install()
    return engine


# --- payments ---------------------------------------------------------------------------------


async def test_payment_succeeds_with_one_intent_carrying_the_jobs_metadata(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    job = make_job("payment-process", payment(metadata={"orderId": "o-17", "seats": [3, 4]}),
                   tenant_id="t1")

    result = await stripe.process_payment(job)

    assert result["status"] == "succeeded" and result["stripeStatus"] == "succeeded"
    assert result["paymentIntentId"].startswith("pi_")
    assert result["transactionId"] == result["paymentIntentId"]
    assert result["chargeId"].startswith("ch_")
    assert (result["amount"], result["currency"], result["reconciled"]) == (2500, "usd", False)
    [intent] = await stripe_objects("payment_intents")
    assert intent["id"] == result["paymentIntentId"]
    assert (intent["amount"], intent["currency"], intent["payment_method"]) == (
        2500, "usd", "pm_card_visa")
    assert intent["metadata"] == {
        "tickq_job_id": job.id, "tenant_id": "t1", "idempotency_key": "payment-v1-u1-e1-2500",
        "userId": "u1", "venueId": "v1", "eventId": "e1", "orderId": "o-17", "seats": "[3,4]"}


async def test_payments_through_the_engine_complete_or_go_to_the_dlq_with_stripes_code(
        stripe: StripeIntegration, payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    engine = engine_with(stripe)
    async with engine:
        paid = await engine.enqueue("payment-process", payment(), tenant_id="t1")
        declined = await engine.enqueue("payment-process",
                                        payment("pm_card_chargeCustomerFail", amount=999))
        paid_done = await engine.wait(paid.id, timeout=10)
        declined_done = await engine.wait(declined.id, timeout=10)

    assert paid_done.state is COMPLETED
    assert paid_done.result["status"] == "succeeded"
    assert declined_done.state is FAILED and declined_done.attempts == 1
    [error] = declined_done.errors
    assert (error.type, error.code) == ("PermanentError", "card_declined")
    assert "declined" in error.message
    # The declined intent exists at Stripe, failed; nothing was charged for it.
    [intent] = await stripe_objects("payment_intents", job_id=declined.id)
    assert intent["status"] == "requires_payment_method"


async def test_a_retried_payment_finds_the_earlier_intent_instead_of_charging_again(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    job = make_job("payment-process", payment())
    first = await stripe.process_payment(job)  # the attempt that then died before completing

    second = await stripe.process_payment(interrupted(job))

    assert second["paymentIntentId"] == first["paymentIntentId"]
    assert (second["status"], second["reconciled"]) == ("succeeded", True)
    assert len(await stripe_objects("payment_intents", job_id=job.id)) == 1
    # localstripe refuses `created` filters on this listing; the lookup noticed and paged.
    assert stripe.lookup.time_filter is False


async def test_a_retried_payment_confirms_an_unconfirmed_intent_of_an_earlier_attempt(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    job = make_job("payment-process", payment(), attempts=2)
    other = make_job("payment-process", payment(amount=700))
    await stripe.process_payment(other)  # another job's intent in the same listing
    open_intent = await stripe.client.v1.payment_intents.create_async({
        "amount": 2500, "currency": "usd", "payment_method": "pm_card_visa",
        "metadata": {"tickq_job_id": job.id}})
    assert open_intent.status == "requires_confirmation"

    result = await stripe.process_payment(job)

    assert (result["paymentIntentId"], result["status"]) == (open_intent.id, "succeeded")
    [intent] = await stripe_objects("payment_intents", job_id=job.id)
    assert intent["status"] == "succeeded"


async def test_a_payment_needing_customer_authentication_completes_as_pending(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any]
        ) -> None:
    card = await stripe.client.v1.payment_methods.create_async({
        "type": "card", "card": {"number": "4000002500003155", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123"}})  # a 3-D Secure test card

    result = await stripe.process_payment(make_job("payment-process", payment(card.id)))

    assert (result["status"], result["stripeStatus"]) == ("pending", "requires_action")
    assert result["chargeId"] is None


# --- refunds ----------------------------------------------------------------------------------


async def test_refunds_in_full_and_in_part_by_intent_or_charge(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    paid_a = await stripe.process_payment(make_job("payment-process", payment(amount=4000),
                                                   tenant_id="t1"))
    paid_b = await stripe.process_payment(make_job("payment-process", payment(amount=3000)))
    full = make_job("refund-process", {"transactionId": paid_a["paymentIntentId"],
                                       "userId": "u1", "venueId": "v1"}, tenant_id="t1")
    part = make_job("refund-process", {"transactionId": paid_b["chargeId"], "amount": 1200,
                                       "reason": "seat was double-booked", "userId": "u1",
                                       "venueId": "v1"})

    whole = await stripe.process_refund(full)
    some = await stripe.process_refund(part)

    assert whole["refundId"].startswith("re_") and whole["status"] == "succeeded"
    assert (whole["amount"], whole["currency"], whole["chargeId"]) == (
        4000, "usd", paid_a["chargeId"])
    assert (some["amount"], some["transactionId"], some["status"]) == (
        1200, paid_b["chargeId"], "succeeded")
    [refund_a] = await stripe_objects("refunds", job_id=full.id)
    assert refund_a["metadata"] == {
        "tickq_job_id": full.id, "tenant_id": "t1",
        "idempotency_key": f"refund-{paid_a['paymentIntentId']}", "userId": "u1",
        "venueId": "v1", "reason": "requested_by_customer"}
    [refund_b] = await stripe_objects("refunds", job_id=part.id)
    assert (refund_b["amount"], refund_b["metadata"]["reason"]) == (1200,
                                                                    "seat was double-booked")


async def test_a_tenant_cannot_refund_another_tenants_payment(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    theirs = await stripe.process_payment(make_job("payment-process", payment(amount=2000),
                                                   tenant_id="t2"))
    for transaction in (theirs["paymentIntentId"], theirs["chargeId"]):
        job = make_job("refund-process", {"transactionId": transaction, "userId": "u1",
                                          "venueId": "v1"}, tenant_id="t1")
        with pytest.raises(PermanentError) as refused:
            await stripe.process_refund(job)
        assert refused.value.code == "refund_not_permitted"
        assert await stripe_objects("refunds", job_id=job.id) == []
    mine = make_job("refund-process", {"transactionId": theirs["chargeId"], "userId": "u1",
                                       "venueId": "v1"}, tenant_id="t2")
    assert (await stripe.process_refund(mine))["status"] == "succeeded"


async def test_a_retried_refund_finds_the_earlier_refund(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    paid = await stripe.process_payment(make_job("payment-process", payment()))
    job = make_job("refund-process", {"transactionId": paid["paymentIntentId"], "amount": 500,
                                      "userId": "u1", "venueId": "v1"})
    first = await stripe.process_refund(job)

    second = await stripe.process_refund(interrupted(job))

    assert (second["refundId"], second["reconciled"]) == (first["refundId"], True)
    assert len(await stripe_objects("refunds", job_id=job.id)) == 1


async def test_a_refund_of_something_that_is_not_a_payment_fails_without_a_request(
        stripe: StripeIntegration, make_job: Callable[..., Job]) -> None:
    job = make_job("refund-process", {"transactionId": "order-17", "userId": "u1",
                                      "venueId": "v1"})

    with pytest.raises(PermanentError) as caught:
        await stripe.process_refund(job)

    assert caught.value.code == "invalid_transaction_id"
    assert "pi_" in caught.value.message


async def test_a_refund_of_an_unknown_payment_is_permanent_with_stripes_answer(
        stripe: StripeIntegration, make_job: Callable[..., Job]) -> None:
    job = make_job("refund-process", {"transactionId": "pi_doesnotexist", "userId": "u1",
                                      "venueId": "v1"})

    with pytest.raises(PermanentError) as caught:
        await stripe.process_refund(job)

    assert "404" in caught.value.message


# --- payouts ----------------------------------------------------------------------------------


async def test_payouts_to_a_connected_account_or_a_bank_account(
        stripe: StripeIntegration, make_job: Callable[..., Job],
        stripe_objects: Callable[..., Any]) -> None:
    to_account = make_job("payout-process", {
        "venueId": "v1", "amount": 5000, "bankAccountId": "acct_1VenueOne", "type": "standard",
        "currency": "EUR", "period": "2025-05"}, tenant_id="t1")
    to_bank = make_job("payout-process", {
        "venueId": "v2", "amount": 800, "bankAccountId": "ba_1VenueTwo", "type": "instant",
        "currency": "EUR", "payoutId": "po-77"})

    standard = await stripe.process_payout(to_account)
    instant = await stripe.process_payout(to_bank)

    assert standard["payoutId"].startswith("po_")
    assert (standard["status"], standard["stripeStatus"]) == ("pending", "pending")
    assert (standard["account"], standard["method"], standard["amount"],
            standard["currency"]) == ("acct_1VenueOne", "standard", 5000, "eur")
    assert (instant["account"], instant["method"]) == (None, "instant")
    [payout] = await stripe_objects("payouts", job_id=to_account.id)
    assert payout["metadata"] == {"tickq_job_id": to_account.id, "tenant_id": "t1",
                                  "idempotency_key": "payout-v1-2025-05", "venueId": "v1",
                                  "period": "2025-05"}
    [other] = await stripe_objects("payouts", job_id=to_bank.id)
    assert other["metadata"]["payoutId"] == "po-77"


async def test_a_retried_payout_finds_the_earlier_payout(
        stripe: StripeIntegration, make_job: Callable[..., Job],
        stripe_objects: Callable[..., Any]) -> None:
    job = make_job("payout-process", {"venueId": "v1", "amount": 5000, "currency": "EUR",
                                      "bankAccountId": "acct_1VenueOne"})
    first = await stripe.process_payout(job)

    second = await stripe.process_payout(interrupted(job))

    assert (second["payoutId"], second["reconciled"]) == (first["payoutId"], True)
    assert len(await stripe_objects("payouts", job_id=job.id)) == 1


async def test_a_payout_to_something_that_is_no_account_fails_without_a_request(
        stripe: StripeIntegration, make_job: Callable[..., Job]) -> None:
    job = make_job("payout-process", {"venueId": "v1", "amount": 5000,
                                      "bankAccountId": "DE89370400440532013000"})

    with pytest.raises(PermanentError) as caught:
        await stripe.process_payout(job)

    assert caught.value.code == "invalid_bank_account"


# --- configuration and lifecycle --------------------------------------------------------------


async def test_without_a_secret_key_jobs_fail_as_not_configured(
        stripe_url: str, stripe_settings: Callable[..., Any], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    settings = stripe_settings(stripe_url).model_copy(update={"stripe_secret_key": None})
    engine = tickq.Engine(MemoryStore(), shutdown_grace_s=1.0)
    integrations = build_integrations(settings, engine, factories=[FACTORY])
    integrations.install()
    await integrations.start()
    try:
        async with engine:
            job = await engine.enqueue("payment-process", payment())
            done = await engine.wait(job.id, timeout=10)
    finally:
        await integrations.close()

    status = integrations.status()["stripe"]
    assert status.status is Readiness.NOT_CONFIGURED
    assert status.message == "stripe is not configured: set STRIPE_SECRET_KEY"
    assert done.state is FAILED
    [error] = done.errors
    assert (error.code, error.message) == ("not_configured", status.message)
    assert await stripe_objects("payment_intents") == []


async def test_metadata_stripe_would_refuse_is_refused_before_any_request(
        stripe: StripeIntegration, make_job: Callable[..., Job], payment: Callable[..., Any],
        stripe_objects: Callable[..., Any]) -> None:
    job = make_job("payment-process", payment(metadata={"note": "x" * 501, "a[b]": "c"}))

    with pytest.raises(PermanentError) as caught:
        await stripe.process_payment(job)

    assert caught.value.code == "invalid_metadata"
    assert "'note'" in caught.value.message and "'a[b]'" in caught.value.message
    assert await stripe_objects("payment_intents") == []


async def test_closing_the_integration_leaves_no_open_http_session(
        stripe_url: str, stripe_settings: Callable[..., Any], make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        integration = StripeIntegration(stripe_settings(stripe_url), SystemClock())
        await integration.close()  # before start: nothing to close
        await integration.start()
        await integration.process_payment(make_job("payment-process", payment()))
        await integration.close()
        await integration.close()
        del integration
        gc.collect()

    assert not [w for w in caught if "Unclosed" in str(w.message)], caught
