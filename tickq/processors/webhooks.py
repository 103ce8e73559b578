"""Signed webhook delivery (`webhook-deliver`), and the job callbacks and platform notifications
that ride on it (`tickq.processors.notify`).

A delivery is one JSON POST of `{"id", "event", "createdAt", "data"}` where `id` is the job's
`deliveryId` (its job id when it has none) and stays the same on every retry, so a receiver can
drop repeats; `createdAt` is when the delivery was enqueued. Headers: `X-Tickq-Event`,
`X-Tickq-Delivery` (the id again) and `X-Tickq-Signature` (see `outbound.sign`), computed over
the exact bytes sent. The URL is the job's, so the client is guarded: private and loopback
addresses are refused unless OUTBOUND_ALLOW_PRIVATE=true, checked on the address connected to.

A receiver's 5xx, timeout or 429 fails this delivery's attempt (retried with backoff) and is
not counted against the shared `internal` provider: one dead or throttling receiver must not
stop every other webhook and push notification.

The operator's own notification URLs (PAYMENT_/REFUND_/NFT_/ADMIN_WEBHOOK_URL) are trusted like
Twilio's or the push gateway's endpoint: they may be on the private network, so deliveries the
service itself enqueued there go through an unguarded client (a second session, so that the
guarded one never relaxes its resolver). A job with a tenant (anything enqueued over the API) may
not deliver to those endpoints at all, however their URL is spelt: the platform trusts what
arrives there signed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from yarl import URL

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.engine.jobtypes import WebhookData
from tickq.errors import ConfigError, PermanentError, ProviderError, RateLimited, RetryableError
from tickq.processors.base import Integration, Processor, job_data
from tickq.processors.notify import Notifier, platform_urls
from tickq.processors.outbound import (
    SIGNATURE_HEADER,
    DestinationRefused,
    OutboundClient,
    check_url,
    raise_for_status,
    shown,
    sign,
)

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

PROVIDER = "internal"
#: settings field -> the variable that sets it, for start-up errors
_URL_VARS = {"payment_webhook_url": "PAYMENT_WEBHOOK_URL",
             "refund_webhook_url": "REFUND_WEBHOOK_URL", "nft_webhook_url": "NFT_WEBHOOK_URL",
             "admin_webhook_url": "ADMIN_WEBHOOK_URL"}


class WebhooksIntegration(Integration):
    name = "webhooks"
    job_types = ("webhook-deliver",)
    providers = (PROVIDER,)

    def __init__(self, settings: Settings, engine: Engine) -> None:
        super().__init__()
        self.settings = settings
        secret = settings.webhook_signing_secret
        self.secret = secret.get_secret_value() if secret else ""
        if not self.secret:
            self.missing.append("WEBHOOK_SIGNING_SECRET")
        self.client = OutboundClient(settings, provider=PROVIDER, guard=True)
        self.platform_urls = platform_urls(settings)
        #: the platform's notification endpoints: jobs with a tenant may not deliver there
        self.platform_endpoints = frozenset(e for e in map(endpoint, self.platform_urls) if e)
        self.platform_client = OutboundClient(settings, provider=PROVIDER, guard=False)
        self.notifier = Notifier(engine, settings)

    def processors(self) -> Mapping[str, Processor]:
        return {"webhook-deliver": self.deliver}

    async def start(self) -> None:
        for field, var in _URL_VARS.items():
            url = getattr(self.settings, field)
            if url:
                try:
                    check_url(url)
                except DestinationRefused as exc:
                    raise ConfigError(f"{var}: {exc.message}") from None
        await self.client.start()
        if self.platform_urls:
            await self.platform_client.start()
        self.notifier.start()

    async def close(self) -> None:
        await self.notifier.close()
        await self.client.close()
        await self.platform_client.close()

    async def deliver(self, job: Job) -> dict[str, Any]:
        data = job_data(WebhookData, job)
        if job.tenant_id is not None and endpoint(data.url) in self.platform_endpoints:
            raise PermanentError("this URL receives the platform's own notifications; only "
                                 "the service may deliver there", code="reserved_destination")
        trusted = job.tenant_id is None and data.url in self.platform_urls
        client = self.platform_client if trusted else self.client
        delivery = data.deliveryId or job.id
        _header_safe("event", data.event)
        _header_safe("deliveryId", delivery)
        body = orjson.dumps({"id": delivery, "event": data.event,
                             "createdAt": iso(job.created_at), "data": data.payload})
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
                   "X-Tickq-Event": data.event, "X-Tickq-Delivery": delivery}
        what = shown(data.url)
        try:
            reply = await client.post(data.url, body, headers=headers, what=what)
            raise_for_status(reply, provider=PROVIDER, what=what)
        except (ProviderError, RateLimited) as exc:
            if trusted:
                raise
            # A receiver the job chose is not the provider: its outage or its 429 is this
            # job's failure (retried with backoff, attempts spent, DLQ at the end), never a
            # reason to open the breaker or cool down the bucket that every other webhook and
            # push notification shares.
            raise RetryableError(exc.message, code=exc.code) from None
        return {"deliveryId": delivery, "status": reply.status}


def endpoint(url: str) -> tuple[str, str, int | None, str] | None:
    """What identifies a receiving endpoint, whatever the spelling of its URL: scheme, host
    (lower case, no trailing dot), port and path (decoded, without empty segments), not the
    query. Two URLs with the same endpoint reach the same handler on any common server."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        return None
    if not u.host:
        return None
    path = "/".join(part for part in u.path.split("/") if part)
    return u.scheme.lower(), u.host.lower().rstrip("."), u.port, path


def _header_safe(field: str, value: str) -> None:
    """Header values cannot carry control characters (a newline would end the header)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise PermanentError(f"data.{field} contains a control character; it is sent as an "
                             "HTTP header", code="invalid_header")


def integration(settings: Settings, engine: Engine) -> Integration:
    return WebhooksIntegration(settings, engine)
