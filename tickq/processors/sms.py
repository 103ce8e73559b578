"""SMS through Twilio's Messages API (`send-sms`).

One form-encoded POST to `{TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP
basic auth (account sid, auth token). The job's idempotency key (its id when it has none) goes
along as `I-Twilio-Idempotency-Token`, so a retried attempt whose first try reached Twilio can be
recognised as the same request. Twilio's answers are read as Twilio writes them: a 201 carries
the message `sid` and `status`; an error carries `code` and `message` (21211, an invalid
number, and every other 4xx are permanent; 429, 408 and 5xx are retried as `outbound` says).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

from tickq.engine.job import Job
from tickq.engine.jobtypes import SmsData
from tickq.errors import ConfigError, ProviderError
from tickq.processors.base import Integration, Processor, job_data
from tickq.processors.outbound import (
    DestinationRefused,
    OutboundClient,
    Reply,
    raise_for_status,
)

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

PROVIDER = "twilio-sms"
#: the Messages API version path Twilio still serves
API_VERSION = "2010-04-01"


class SmsIntegration(Integration):
    name = "sms"
    job_types = ("send-sms",)
    providers = (PROVIDER,)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.account_sid = settings.twilio_account_sid
        self.auth_token = (settings.twilio_auth_token.get_secret_value()
                           if settings.twilio_auth_token else None)
        self.from_number = settings.twilio_from_number
        self.api_base = settings.twilio_api_base.rstrip("/")
        for var, value in (("TWILIO_ACCOUNT_SID", self.account_sid),
                           ("TWILIO_AUTH_TOKEN", self.auth_token),
                           ("TWILIO_FROM_NUMBER", self.from_number)):
            if not value:
                self.missing.append(var)
        self.client = OutboundClient(settings, provider=PROVIDER, guard=False)
        #: HTTP basic auth: the account sid and its auth token
        self.authorization = aiohttp.encode_basic_auth(self.account_sid or "",
                                                       self.auth_token or "")

    @property
    def messages_url(self) -> str:
        return (f"{self.api_base}/{API_VERSION}/Accounts/{quote(self.account_sid or '', safe='')}"
                "/Messages.json")

    def processors(self) -> Mapping[str, Processor]:
        return {"send-sms": self.send}

    async def start(self) -> None:
        try:
            self.client.check(self.messages_url)
        except DestinationRefused as exc:
            raise ConfigError(f"TWILIO_API_BASE: {exc.message}") from None
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def send(self, job: Job) -> dict[str, Any]:
        data = job_data(SmsData, job)
        form = {"To": data.to, "From": data.from_ or self.from_number or "", "Body": data.message}
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json",
                   "Authorization": self.authorization,
                   "I-Twilio-Idempotency-Token": job.idempotency_key or job.id}
        reply = await self.client.post(self.messages_url, urlencode(form).encode(),
                                       headers=headers, what="Twilio")
        if not reply.ok:
            detail, code = twilio_error(reply)
            raise_for_status(reply, provider=PROVIDER, what="Twilio", detail=detail, code=code)
        body = reply.json()
        sid = body.get("sid") if isinstance(body, dict) else None
        if not isinstance(sid, str) or not sid:
            # The message may exist, but nothing here proves it: retry under the same token.
            raise ProviderError(f"Twilio answered {reply.status} without a message sid",
                                status=None, provider=PROVIDER, code="bad_reply")
        status = body.get("status") if isinstance(body, dict) else None
        return {"sid": sid, "status": status if isinstance(status, str) else "unknown"}


def twilio_error(reply: Reply) -> tuple[str | None, str | None]:
    """Twilio's error message and code (`twilio_21211`) from an error reply, when it has them."""
    body = reply.json()
    if not isinstance(body, dict):
        return None, None
    message = body.get("message")
    code = body.get("code")
    detail = str(message) if message else None
    if code is None:
        return detail, None
    return (f"{detail} (error {code})" if detail else f"error {code}"), f"twilio_{code}"


def integration(settings: Settings, engine: Engine) -> Integration:
    return SmsIntegration(settings)
