"""The job types of the ticketing platform (spec seed-003 "JOB TYPES & DATA CONTRACTS", seed-004
"Job Types" and "Idempotency Service"): their queues, priorities, data contracts and key rules.

Field names follow the spec's JSON contracts (camelCase). Key rules follow seed-004; a type with no
rule gets no automatic key (the spec's generic-hash fallback was a known issue: it silently merged
jobs that differed only in fields the caller did not mean to compare).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tickq.engine.queues import DAY, HOUR
from tickq.engine.registry import JobType

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"\S")]
Cents = Annotated[int, Field(gt=0, le=100_000_000_00)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()\-]{6,20}$")]

CRITICAL, HIGH, NORMAL, LOW, BACKGROUND = 10, 7, 5, 3, 1


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PaymentData(_Data):
    userId: NonEmpty
    venueId: NonEmpty
    eventId: NonEmpty
    amount: Cents
    currency: Currency = "USD"
    paymentMethod: NonEmpty
    deviceFingerprint: str | None = None
    metadata: dict[str, Any] | None = None


class RefundData(_Data):
    transactionId: NonEmpty
    amount: Cents | None = None  # None refunds in full
    reason: str = "requested_by_customer"
    userId: NonEmpty
    venueId: NonEmpty


class PayoutData(_Data):
    venueId: NonEmpty
    amount: Cents
    bankAccountId: NonEmpty
    type: Literal["instant", "standard"] = "standard"
    currency: Currency = "USD"
    period: str | None = None
    payoutId: str | None = None


class NftMintData(_Data):
    eventId: NonEmpty
    ticketId: NonEmpty
    seatId: str | None = None
    userId: NonEmpty
    venueId: NonEmpty
    recipient: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class NftTransferData(_Data):
    mintAddress: NonEmpty
    fromUserId: NonEmpty
    toUserId: NonEmpty
    toWallet: NonEmpty
    ticketId: NonEmpty
    transferId: str | None = None


class EmailData(_Data):
    to: Email
    template: NonEmpty
    data: dict[str, Any] = Field(default_factory=dict)
    subject: str | None = None
    from_: Email | None = Field(default=None, alias="from")


class SmsData(_Data):
    to: Phone
    message: Annotated[str, StringConstraints(min_length=1, max_length=1600)]
    template: str | None = None
    from_: str | None = Field(default=None, alias="from")


class PushData(_Data):
    userId: NonEmpty
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    body: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    data: dict[str, Any] | None = None


class WebhookData(_Data):
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
    event: NonEmpty
    payload: dict[str, Any] = Field(default_factory=dict)
    deliveryId: str | None = None


class AnalyticsData(_Data):
    eventType: NonEmpty
    venueId: str | None = None
    userId: str | None = None
    eventId: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: NonEmpty


class CleanupData(_Data):
    dataType: Literal["sessions", "temp_files", "old_logs", "jobs", "idempotency_keys"]
    olderThan: NonEmpty


class ReportData(_Data):
    reportType: NonEmpty
    venueId: str | None = None
    startDate: NonEmpty
    endDate: NonEmpty
    format: Literal["pdf", "csv", "json"] = "json"


def _utc(now: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(now))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _payment_key(d: Mapping[str, Any], now: float) -> str:
    return f"payment-{d['venueId']}-{d['userId']}-{d['eventId']}-{d['amount']}"


def _refund_key(d: Mapping[str, Any], now: float) -> str:
    return f"refund-{d['transactionId']}"


def _payout_key(d: Mapping[str, Any], now: float) -> str:
    return f"payout-{d['venueId']}-{d.get('period') or d.get('payoutId') or d['amount']}"


def _nft_key(d: Mapping[str, Any], now: float) -> str:
    return f"nft-{d['eventId']}-{d.get('seatId') or d['ticketId']}"


def _nft_transfer_key(d: Mapping[str, Any], now: float) -> str:
    return f"nft-transfer-{d['mintAddress']}-{d.get('transferId') or d['toWallet']}"


def _email_key(d: Mapping[str, Any], now: float) -> str:
    return f"email-{d['template']}-{d['to']}-{_utc(now, '%Y-%m-%d')}"


def _sms_key(d: Mapping[str, Any], now: float) -> str:
    # The spec keyed SMS by template; a free-text message stands in for it by its digest.
    template = d.get("template") or _digest(d["message"])
    return f"sms-{d['to']}-{template}-{_utc(now, '%Y-%m-%dT%H')}"


def _analytics_key(d: Mapping[str, Any], now: float) -> str:
    return (f"analytics-{d['eventType']}-{d.get('venueId') or 'global'}-"
            f"{d.get('userId') or 'anonymous'}-{d['timestamp']}")


BUILTIN_TYPES: tuple[JobType, ...] = (
    JobType(name="payment-process", queue="money", priority=CRITICAL, timeout_s=60,
            schema=PaymentData, key_rule=_payment_key, key_ttl_s=DAY, retention_s=90 * DAY,
            provider="stripe-charges", description="Charge a card through a Stripe PaymentIntent"),
    JobType(name="refund-process", queue="money", priority=CRITICAL, timeout_s=60,
            schema=RefundData, key_rule=_refund_key, key_ttl_s=DAY, retention_s=90 * DAY,
            provider="stripe-refunds", description="Refund a payment in full or in part"),
    JobType(name="payout-process", queue="money", priority=CRITICAL, timeout_s=60,
            schema=PayoutData, key_rule=_payout_key, key_ttl_s=DAY, retention_s=90 * DAY,
            provider="stripe-payouts", description="Pay a venue out to its connected account"),
    JobType(name="nft-mint", queue="money", priority=HIGH, timeout_s=120, schema=NftMintData,
            key_rule=_nft_key, key_ttl_s=365 * DAY, retention_s=365 * DAY, provider="solana",
            description="Mint a ticket NFT on Solana"),
    JobType(name="nft-transfer", queue="money", priority=HIGH, timeout_s=120,
            schema=NftTransferData, key_rule=_nft_transfer_key, key_ttl_s=365 * DAY,
            retention_s=365 * DAY, provider="solana",
            description="Transfer a ticket NFT (secondary market)"),
    JobType(name="send-email", queue="communication", priority=NORMAL, timeout_s=30,
            schema=EmailData, key_rule=_email_key, key_ttl_s=DAY, max_attempts=3,
            provider="sendgrid-transactional", description="Send a templated transactional email"),
    JobType(name="send-sms", queue="communication", priority=NORMAL, timeout_s=30,
            schema=SmsData, key_rule=_sms_key, key_ttl_s=HOUR, provider="twilio-sms",
            description="Send an SMS"),
    JobType(name="send-push", queue="communication", priority=NORMAL, timeout_s=30,
            schema=PushData, key_ttl_s=DAY, provider="internal",
            description="Send a push notification"),
    JobType(name="webhook-deliver", queue="communication", priority=NORMAL, timeout_s=30,
            schema=WebhookData, key_ttl_s=DAY, provider="internal",
            description="Deliver a signed webhook to an outside URL"),
    JobType(name="analytics-track", queue="background", priority=LOW, timeout_s=30,
            schema=AnalyticsData, key_rule=_analytics_key, key_ttl_s=DAY,
            description="Record an analytics event"),
    JobType(name="cleanup-old-data", queue="background", priority=BACKGROUND, timeout_s=600,
            schema=CleanupData, description="Remove expired data"),
    JobType(name="generate-report", queue="background", priority=LOW, timeout_s=600,
            schema=ReportData, description="Build a report"),
)
