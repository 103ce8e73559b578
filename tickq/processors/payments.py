"""Stripe: `payment-process`, `refund-process` and `payout-process`.

One `StripeClient` per service, on the SDK's aiohttp transport, opened in `start` and closed in
`close`. The SDK never retries (`max_network_retries=0`): the engine owns retries, backoff, the
rate limit and the circuit breaker, and a retry inside the SDK would hide failures from all
four. Every request that moves money carries an Idempotency-Key (the job's key, or
`tickq-<job id>` when it has none) and metadata naming the job (`tickq_job_id`, `tenant_id`,
`idempotency_key`), and every attempt after the first looks for an earlier attempt's effect
before acting again (`stripe_lookup`).

What each job does at Stripe:

* a payment is one PaymentIntent, created and confirmed in one request for the card payment
  method in the job (`payment_method_types=["card"]`: a card needs no redirect, so no
  `return_url`). An intent that needs the customer (`requires_action`) or is still `processing`
  completes the job with status `pending`, never `succeeded`; the webhook records how it ended
  (`tickq.http.webhooks_in`). A declined intent is final for the job: Stripe replays the same
  answer for the same Idempotency-Key, so a new attempt needs a new payment job;
* a refund is a Refund of a PaymentIntent (`pi_...`) or a charge (`ch_...`/`py_...`), in full
  when the job gives no amount. Stripe's own `reason` is sent for `duplicate` and `fraudulent`,
  the two that change what Stripe does (fraudulent also feeds Radar); every reason, the free
  text of the data contract included, is kept in the metadata;
* a payout is a Stripe Payout, because its `method` (standard or instant) is what the data
  contract's `type` means; a Transfer has no such choice, and localstripe has no transfers. A
  `bankAccountId` that is a connected account (`acct_...`) pays that account's balance out to
  its default external account (the request is made on the account, `Stripe-Account`); a bank
  account or card (`ba_...`, `card_...`) is the destination of a payout from the platform's own
  balance. A payout is `pending` for days; the webhook records `paid` or `failed`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import orjson
import stripe

from tickq.clock import Clock, iso
from tickq.engine.job import Job
from tickq.engine.jobtypes import PaymentData, PayoutData, RefundData
from tickq.errors import ConfigError, PermanentError, RetryableError
from tickq.processors.base import Integration, Processor, job_data
from tickq.processors.stripe_errors import call
from tickq.processors.stripe_lookup import Lookup
from tickq.processors.stripe_status import FAILED, JOB_ID_KEY, summary

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from stripe import ListObject, Payout, Refund
    from stripe.params import (
        PaymentIntentCreateParams,
        PaymentIntentListParams,
        PayoutCreateParams,
        PayoutListParams,
        RefundCreateParams,
        RefundListParams,
    )

    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)

CHARGES, REFUNDS, PAYOUTS = "stripe-charges", "stripe-refunds", "stripe-payouts"
#: Stripe's metadata limits: keys, key length, value length (a longer one is a 400)
MAX_METADATA_KEYS, MAX_KEY_CHARS, MAX_VALUE_CHARS = 50, 40, 500
#: refund reasons Stripe acts on; other reasons travel in the metadata only
STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent"})
#: an intent in one of these states has taken the money or may still take it
_INTENT_RANK = {"succeeded": 0, "processing": 1, "requires_capture": 1, "requires_action": 1,
                "requires_confirmation": 2}



def integration(settings: Settings, engine: Engine) -> StripeIntegration:
    """The factory named in `tickq.processors.FACTORIES`."""
    return StripeIntegration(settings, engine.clock)


class StripeIntegration(Integration):
    name = "stripe"
    job_types = ("payment-process", "refund-process", "payout-process")
    providers = (CHARGES, REFUNDS, PAYOUTS)

    def __init__(self, settings: Settings, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        if settings.stripe_secret_key is None:
            self.missing.append("STRIPE_SECRET_KEY")
        self.lookup = Lookup()
        self._http: stripe.AIOHTTPClient | None = None
        self._client: stripe.StripeClient | None = None

    def processors(self) -> Mapping[str, Processor]:
        return {"payment-process": self.process_payment, "refund-process": self.process_refund,
                "payout-process": self.process_payout}

    async def start(self) -> None:
        key = self.settings.stripe_secret_key
        if key is None:
            raise ConfigError(self.why_not_configured)
        self._http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(total=self.settings.stripe_timeout_s))
        self._client = stripe.StripeClient(
            key.get_secret_value(), stripe_version=self.settings.stripe_api_version,
            base_addresses={"api": self.settings.stripe_api_base.rstrip("/")},
            max_network_retries=0, http_client=self._http)

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            close: Callable[[], Awaitable[None]] = http.close_async  # untyped in the SDK
            await close()

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            # A job claimed before `start` (an embedding application that started the engine
            # first): not the job's fault, so it is retried.
            raise RetryableError("the Stripe integration has not been started",
                                 code="not_started")
        return self._client

    # --- payment-process --------------------------------------------------------------------

    async def process_payment(self, job: Job) -> dict[str, Any]:
        data = job_data(PaymentData, job)
        client = self.client
        key = idempotency_key(job)
        if must_reconcile(job):
            found = await self.lookup.tagged(self._list_intents, job, CHARGES)
            if found:
                best = min((i.to_dict() for i in found), key=_intent_order)
                return await self._intent_outcome(best, key, reconciled=True)
        # `payment_method_types` is the long-standing form localstripe honours; the SDK's
        # typed parameters list only its newer spelling, hence the cast.
        params = cast("PaymentIntentCreateParams", {
            "amount": data.amount, "currency": data.currency.lower(),
            "payment_method": data.paymentMethod, "payment_method_types": ["card"],
            "confirm": True,
            "metadata": metadata(job, key, {"userId": data.userId, "venueId": data.venueId,
                                            "eventId": data.eventId}, data.metadata)})
        intent = await call(CHARGES, client.v1.payment_intents.create_async(
            params, {"idempotency_key": key}))
        return await self._intent_outcome(intent.to_dict(), key, reconciled=False)

    async def _intent_outcome(self, intent: dict[str, Any], key: str, *,
                              reconciled: bool) -> dict[str, Any]:
        """The job's result for an intent, or the error that ends it. An intent an earlier
        attempt created but did not confirm is confirmed now, not created again."""
        if intent.get("status") == "requires_confirmation":
            confirmed = await call(CHARGES, self.client.v1.payment_intents.confirm_async(
                intent["id"], options={"idempotency_key": f"{key}-confirm"}))
            intent = confirmed.to_dict()
        status = intent.get("status")
        if summary("payment_intent", status) == FAILED:
            code, message = _intent_failure(intent)
            raise PermanentError(f"payment {intent['id']} is {status}: {message}", code=code)
        if status == "requires_confirmation":
            raise RetryableError(f"payment {intent['id']} still requires confirmation",
                                 code="requires_confirmation")
        charge = intent.get("latest_charge")
        return {"paymentIntentId": intent["id"], "transactionId": intent["id"],
                "chargeId": charge.get("id") if isinstance(charge, dict) else charge,
                "status": summary("payment_intent", status), "stripeStatus": status,
                "amount": intent.get("amount"), "currency": intent.get("currency"),
                "reconciled": reconciled, "processedAt": iso(self.clock.now())}

    async def _list_intents(self, params: dict[str, Any]) -> ListObject[Any]:
        return await self.client.v1.payment_intents.list_async(
            cast("PaymentIntentListParams", params))

    # --- refund-process ---------------------------------------------------------------------

    async def process_refund(self, job: Job) -> dict[str, Any]:
        data = job_data(RefundData, job)
        client = self.client
        key = idempotency_key(job)
        target = refund_target(data.transactionId)
        if must_reconcile(job):
            found = await self.lookup.tagged(self._list_refunds, job, REFUNDS, filters=target,
                                             window=False)
            if found:
                newest = max((r.to_dict() for r in found), key=lambda r: r.get("created") or 0)
                return self._refund_outcome(newest, data, reconciled=True)
        await self._check_refundable(job, target)
        params = cast("RefundCreateParams", {
            **target, "metadata": metadata(job, key, {"userId": data.userId,
                                                      "venueId": data.venueId,
                                                      "reason": data.reason}, None)})
        if data.amount is not None:
            params["amount"] = data.amount
        if data.reason in STRIPE_REFUND_REASONS:
            params["reason"] = data.reason
        refund: Refund = await call(REFUNDS, client.v1.refunds.create_async(
            params, {"idempotency_key": key}))
        return self._refund_outcome(refund.to_dict(), data, reconciled=False)

    async def _check_refundable(self, job: Job, target: dict[str, str]) -> None:
        """A job with a tenant may only refund a payment made for that tenant: the transaction
        id comes from the caller, and without this check any caller that can enqueue refunds
        could take back another tenant's payment. The payment is read from Stripe (one request)
        and its `tenant_id` metadata, which every payment tickq makes carries, must match.
        Jobs without a tenant (the embedding application's own) are not limited."""
        if job.tenant_id is None:
            return
        if "payment_intent" in target:
            paid = (await call(REFUNDS, self.client.v1.payment_intents.retrieve_async(
                target["payment_intent"]))).to_dict()
        else:
            paid = (await call(REFUNDS, self.client.v1.charges.retrieve_async(
                target["charge"]))).to_dict()
            intent = paid.get("payment_intent")
            if isinstance(intent, str) and not (paid.get("metadata") or {}).get("tenant_id"):
                paid = (await call(REFUNDS, self.client.v1.payment_intents.retrieve_async(
                    intent))).to_dict()
        owner = (paid.get("metadata") or {}).get("tenant_id")
        if owner != job.tenant_id:
            raise PermanentError(f"{paid.get('id')} was not paid through tickq for this tenant; "
                                 "it cannot be refunded by this job", code="refund_not_permitted")

    def _refund_outcome(self, refund: dict[str, Any], data: RefundData, *,
                        reconciled: bool) -> dict[str, Any]:
        status = refund.get("status")
        if summary("refund", status) == FAILED:
            reason = refund.get("failure_reason") or "refund_failed"
            raise PermanentError(f"refund {refund['id']} of {data.transactionId} is {status} "
                                 f"({reason})", code=str(reason))
        return {"refundId": refund["id"], "transactionId": data.transactionId,
                "paymentIntentId": refund.get("payment_intent"), "chargeId": refund.get("charge"),
                "status": summary("refund", status), "stripeStatus": status,
                "amount": refund.get("amount"), "currency": refund.get("currency"),
                "reconciled": reconciled, "processedAt": iso(self.clock.now())}

    async def _list_refunds(self, params: dict[str, Any]) -> ListObject[Any]:
        return await self.client.v1.refunds.list_async(cast("RefundListParams", params))

    # --- payout-process ---------------------------------------------------------------------

    async def process_payout(self, job: Job) -> dict[str, Any]:
        data = job_data(PayoutData, job)
        client = self.client
        key = idempotency_key(job)
        account, destination = payout_target(data.bankAccountId)
        if must_reconcile(job):
            async def list_payouts(params: dict[str, Any]) -> ListObject[Any]:
                return await client.v1.payouts.list_async(
                    cast("PayoutListParams", params),
                    {"stripe_account": account} if account else None)

            found = await self.lookup.tagged(list_payouts, job, PAYOUTS)
            if found:
                newest = max((p.to_dict() for p in found), key=lambda p: p.get("created") or 0)
                return self._payout_outcome(newest, account, reconciled=True)
        params: PayoutCreateParams = {
            "amount": data.amount, "currency": data.currency.lower(), "method": data.type,
            "metadata": metadata(job, key, {"venueId": data.venueId, "period": data.period,
                                            "payoutId": data.payoutId}, None)}
        if destination is not None:
            params["destination"] = destination
        payout: Payout = await call(PAYOUTS, client.v1.payouts.create_async(
            params, {"idempotency_key": key, "stripe_account": account}))
        return self._payout_outcome(payout.to_dict(), account, reconciled=False)

    def _payout_outcome(self, payout: dict[str, Any], account: str | None, *,
                        reconciled: bool) -> dict[str, Any]:
        status = payout.get("status")
        if summary("payout", status) == FAILED:
            code = payout.get("failure_code") or "payout_failed"
            raise PermanentError(f"payout {payout['id']} is {status}: "
                                 f"{payout.get('failure_message') or code}", code=str(code))
        return {"payoutId": payout["id"], "account": account,
                "destination": payout.get("destination"), "method": payout.get("method"),
                "status": summary("payout", status), "stripeStatus": status,
                "amount": payout.get("amount"), "currency": payout.get("currency"),
                "arrivalDate": payout.get("arrival_date"), "reconciled": reconciled,
                "processedAt": iso(self.clock.now())}

# --- the pieces every request shares ------------------------------------------------------------


def idempotency_key(job: Job) -> str:
    """The Idempotency-Key of every request the job makes."""
    return job.idempotency_key or f"tickq-{job.id}"


def must_reconcile(job: Job) -> bool:
    """Whether an earlier attempt may have acted: any attempt but the first (a 5xx or a lost
    connection can come after Stripe did the work), and any attempt after an interrupted one."""
    return job.attempts > 1 or job.needs_reconcile


def metadata(job: Job, key: str, fields: Mapping[str, str | None],
             extra: Mapping[str, Any] | None) -> dict[str, str]:
    """The metadata of an object the job creates: the caller's own entries (non-strings as
    JSON), then the job's fields, which win on a clash because reconciliation relies on them.
    Anything Stripe would refuse is refused here, naming the entry."""
    out: dict[str, str] = {}
    for name, value in (extra or {}).items():
        if value is not None:
            out[str(name)] = value if isinstance(value, str) else orjson.dumps(value).decode()
    ours = {JOB_ID_KEY: job.id, "tenant_id": job.tenant_id, "idempotency_key": key, **fields}
    out.update({name: value for name, value in ours.items() if value})
    problems = [f"{name!r}: keys are at most {MAX_KEY_CHARS} characters without [ or ]"
                for name in out if len(name) > MAX_KEY_CHARS or "[" in name or "]" in name]
    problems += [f"{name!r}: values are at most {MAX_VALUE_CHARS} characters"
                 for name, value in out.items() if len(value) > MAX_VALUE_CHARS]
    if len(out) > MAX_METADATA_KEYS:
        problems.append(f"{len(out)} entries with tickq's own; Stripe allows {MAX_METADATA_KEYS}")
    if problems:
        raise PermanentError(f"metadata Stripe would refuse: {'; '.join(problems)}",
                             code="invalid_metadata")
    return out


def refund_target(transaction_id: str) -> dict[str, str]:
    """What a refund names: a PaymentIntent or a charge."""
    if transaction_id.startswith("pi_"):
        return {"payment_intent": transaction_id}
    if transaction_id.startswith(("ch_", "py_")):
        return {"charge": transaction_id}
    raise PermanentError(f"transactionId {transaction_id!r} is neither a PaymentIntent (pi_...) "
                         "nor a charge (ch_..., py_...)", code="invalid_transaction_id")


def payout_target(bank_account_id: str) -> tuple[str | None, str | None]:
    """(connected account to act on, destination) for a payout's `bankAccountId`."""
    if bank_account_id.startswith("acct_"):
        return bank_account_id, None
    if bank_account_id.startswith(("ba_", "card_")):
        return None, bank_account_id
    raise PermanentError(f"bankAccountId {bank_account_id!r} is neither a connected account "
                         "(acct_...) nor a bank account or card (ba_..., card_...)",
                         code="invalid_bank_account")


def _intent_order(intent: dict[str, Any]) -> tuple[int, float]:
    """Sort key picking the intent a job's result names when it has several: one that took the
    money first, then one that may still, then the newest."""
    return _INTENT_RANK.get(str(intent.get("status")), 3), -float(intent.get("created") or 0)


def _intent_failure(intent: dict[str, Any]) -> tuple[str, str]:
    error = intent.get("last_payment_error")
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"]), str(error.get("message") or error["code"])
    if intent.get("status") == "canceled":
        return "payment_canceled", str(intent.get("cancellation_reason") or "canceled")
    return "payment_failed", "no payment method succeeded"


__all__ = ["StripeIntegration", "idempotency_key", "integration", "metadata", "must_reconcile"]
