"""What the platform's jobs did for the business: payments and refunds (counts and amounts),
NFT mints and transfers, emails and webhooks, counted from the engine's COMPLETED and FAILED
events of those job types.

Each number is read once, from the job as its event reports it: the amount and currency it was
asked to charge (its data) and what the provider said (its result: `succeeded`, or `pending`
when Stripe accepted a payment whose money has not moved yet). Nothing is recounted from the
store, so retention pruning a job, or a dead-letter job being retried later, never changes what
was counted; a job that failed, was retried from the dead-letter queue and then completed is
counted once as failed and once as processed, because both happened.

The two amounts are exposed under the spec's exact names, `payment_amount_total_cents` and
`refund_amount_total_cents`. prometheus_client insists that a counter's name ends in `_total`
and would publish these as `..._cents_total`, so they are published untyped; `rate()` and
`increase()` work on them all the same.

Label values a caller chooses (an email's template, a webhook's event name, a currency) are
capped per metric by `LabelGuard`: a caller inventing a new event name per request must not be
able to grow the registry without bound.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import UnknownMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tickq.engine.events import Event, EventKind
from tickq.engine.job import Job, is_partial
from tickq.metrics_labels import UNKNOWN, Children, LabelGuard

#: the provider's word in a completed job's result (see processors/stripe_status.py)
RESULT_STATUSES = frozenset({"succeeded", "pending"})

#: the job types counted here; events of every other type are ignored at once
BUSINESS_TYPES = frozenset({"payment-process", "refund-process", "nft-mint", "nft-transfer",
                            "send-email", "webhook-deliver"})


def _mapping(raw: bytes | None) -> Mapping[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, Mapping) else {}


def _cents(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _status(result: Mapping[str, Any]) -> str:
    status = result.get("status")
    return status if isinstance(status, str) and status in RESULT_STATUSES else UNKNOWN


class BusinessMetrics:
    """The counters, registered on `registry`; `on_event` is fed the engine's COMPLETED and
    FAILED events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Children[Counter]:
            return Children(Counter(name, doc, labels, registry=registry))

        self.payments = counter("payments_processed_total",
                                "Payments processed, by currency and outcome", "currency", "status")
        self.refunds = counter("refunds_processed_total",
                               "Refunds processed, by currency and outcome", "currency", "status")
        self.nft_mints = counter("nfts_minted_total", "NFT mints, by outcome", "status")
        self.nft_transfers = counter("nft_transfers_total", "NFT transfers, by outcome", "status")
        self.emails_sent = counter("emails_sent_total",
                                   "Emails accepted by the mail server, by template", "type")
        self.emails_failed = counter(
            "emails_failed_total",
            "Emails that could not be sent (moved to the dead-letter queue), by template", "type")
        self.webhooks_sent = counter("webhooks_sent_total", "Webhooks delivered, by event",
                                     "event")
        self.webhooks_failed = counter(
            "webhooks_failed_total",
            "Webhooks that could not be delivered (dead-letter queue), by event", "event")
        #: (currency, status) -> cents, for the two untyped amount families
        self.payment_cents: dict[tuple[str, str], int] = {}
        self.refund_cents: dict[tuple[str, str], int] = {}
        self._currencies = LabelGuard()
        self._templates = LabelGuard()
        self._events = LabelGuard()
        registry.register(_AmountCollector(self))

    def on_event(self, event: Event) -> None:
        job = event.job
        if job.type not in BUSINESS_TYPES or is_partial(job):
            return
        if event.kind is EventKind.COMPLETED:
            self._completed(job)
        elif event.kind is EventKind.FAILED:
            self._failed(job)

    def _completed(self, job: Job) -> None:
        # Each branch decodes only the JSON it reads: most of these jobs need one of the two
        # documents, NFT jobs neither.
        kind = job.type
        if kind == "payment-process":
            data, result = _mapping(job.data_json), _mapping(job.result_json)
            key = (self._currencies(str(data.get("currency") or "USD").upper()), _status(result))
            self.payments(*key).inc()
            amount = _cents(data.get("amount"))
            if amount is not None:
                self.payment_cents[key] = self.payment_cents.get(key, 0) + amount
        elif kind == "refund-process":
            # A refund names no currency: Stripe's answer does. With no amount in the data the
            # whole payment was refunded, and the answer says how much that was.
            data, result = _mapping(job.data_json), _mapping(job.result_json)
            currency = result.get("currency")
            key = (self._currencies(currency.upper() if isinstance(currency, str) else None),
                   _status(result))
            self.refunds(*key).inc()
            amount = _cents(data.get("amount")) or _cents(result.get("amount"))
            if amount is not None:
                self.refund_cents[key] = self.refund_cents.get(key, 0) + amount
        elif kind == "nft-mint":
            self.nft_mints("succeeded").inc()
        elif kind == "nft-transfer":
            self.nft_transfers("succeeded").inc()
        elif kind == "send-email":
            # In development without EMAIL_HOST the message is only logged (`delivered`
            # false): nothing was sent, so nothing is counted as sent.
            result = _mapping(job.result_json)
            if result.get("delivered", True) is not False:
                self.emails_sent(self._templates(
                    result.get("template") or _mapping(job.data_json).get("template"))).inc()
        elif kind == "webhook-deliver":
            self.webhooks_sent(self._events(_mapping(job.data_json).get("event"))).inc()

    def _failed(self, job: Job) -> None:
        kind = job.type
        if kind == "payment-process":
            currency = str(_mapping(job.data_json).get("currency") or "USD").upper()
            self.payments(self._currencies(currency), "failed").inc()
        elif kind == "refund-process":
            self.refunds(UNKNOWN, "failed").inc()
        elif kind == "nft-mint":
            self.nft_mints("failed").inc()
        elif kind == "nft-transfer":
            self.nft_transfers("failed").inc()
        elif kind == "send-email":
            self.emails_failed(self._templates(_mapping(job.data_json).get("template"))).inc()
        elif kind == "webhook-deliver":
            self.webhooks_failed(self._events(_mapping(job.data_json).get("event"))).inc()


class _AmountCollector(Collector):
    def __init__(self, metrics: BusinessMetrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, doc, totals in (
                ("payment_amount_total_cents",
                 "Cents of completed payments (succeeded or pending at Stripe), by currency and "
                 "outcome", self._m.payment_cents),
                ("refund_amount_total_cents",
                 "Cents of completed refunds, by currency and outcome", self._m.refund_cents)):
            family = UnknownMetricFamily(name, doc, labels=("currency", "status"))
            for (currency, status), cents in sorted(totals.items()):
                family.add_metric((currency, status), float(cents))
            yield family
