"""Push notifications through an FCM-style gateway (`send-push`).

One JSON POST to `PUSH_API_URL` with `Authorization: Bearer PUSH_API_KEY`, in the shape of FCM's
HTTP v1 `messages:send`:

    {"message": {"topic": "user-<tenant>-<userId>",
                 "notification": {"title": ..., "body": ...},
                 "data": {"key": "value", ...}}}

A job names a user, not a device, so it is sent to that user's topic: the platform's apps
subscribe every device a user signs in on to `user-<tenant>-<userId>` (`user-<userId>` for a job
without a tenant), and unsubscribe it on sign-out. Topic names allow only `[A-Za-z0-9-_.~%]`, so
each part is percent-encoded, `-` included: the dashes between the parts are the only literal
ones, and two different (tenant, user) pairs never share a topic. FCM's `data` carries only
strings: a value that is not a string is sent as its JSON text.

The gateway's answer is FCM's: `{"name": "projects/.../messages/..."}` on success, becoming the
job's result; `{"error": {"code", "status", "message"}}` otherwise (404 UNREGISTERED, 400
INVALID_ARGUMENT and every other 4xx are permanent; 429, 408 and 5xx are retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from tickq.engine.job import Job
from tickq.engine.jobtypes import PushData
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

PROVIDER = "internal"
_TOPIC_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~")


def _topic_part(text: str) -> str:
    return "".join(ch if ch in _TOPIC_SAFE else "".join(f"%{b:02X}" for b in ch.encode())
                   for ch in text)


def user_topic(tenant_id: str | None, user_id: str) -> str:
    """The topic a user's devices subscribe to (see the module docstring)."""
    if tenant_id is None:
        return f"user-{_topic_part(user_id)}"
    return f"user-{_topic_part(tenant_id)}-{_topic_part(user_id)}"


def string_map(data: Mapping[str, Any]) -> dict[str, str]:
    """FCM's `data`: every value a string (others as their JSON text)."""
    return {key: value if isinstance(value, str) else orjson.dumps(value).decode()
            for key, value in data.items()}


class PushIntegration(Integration):
    name = "push"
    job_types = ("send-push",)
    providers = (PROVIDER,)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.url = settings.push_api_url
        self.api_key = settings.push_api_key.get_secret_value() if settings.push_api_key else None
        if not self.url:
            self.missing.append("PUSH_API_URL")
        if not self.api_key:
            self.missing.append("PUSH_API_KEY")
        self.client = OutboundClient(settings, provider=PROVIDER, guard=False)

    def processors(self) -> Mapping[str, Processor]:
        return {"send-push": self.send}

    async def start(self) -> None:
        try:
            self.client.check(self.url or "")
        except DestinationRefused as exc:
            raise ConfigError(f"PUSH_API_URL: {exc.message}") from None
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def send(self, job: Job) -> dict[str, Any]:
        data = job_data(PushData, job)
        topic = user_topic(job.tenant_id, data.userId)
        message: dict[str, Any] = {"topic": topic,
                                   "notification": {"title": data.title, "body": data.body}}
        if data.data:
            message["data"] = string_map(data.data)
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Authorization": f"Bearer {self.api_key}",
                   # FCM has no idempotency of its own; a gateway that keeps one can use this
                   "Idempotency-Key": job.idempotency_key or job.id}
        reply = await self.client.post(self.url or "", orjson.dumps({"message": message}),
                                       headers=headers, what="the push gateway")
        if not reply.ok:
            detail, code = gateway_error(reply)
            raise_for_status(reply, provider=PROVIDER, what="the push gateway", detail=detail,
                             code=code)
        body = reply.json()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise ProviderError(f"the push gateway answered {reply.status} without a message "
                                "name", status=None, provider=PROVIDER, code="bad_reply")
        return {"name": name, "topic": topic}


def gateway_error(reply: Reply) -> tuple[str | None, str | None]:
    """The gateway's error message and status (`fcm_unregistered`), when it gave them. FCM puts
    the most specific reason in `details[].errorCode`, the general one in `status`."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    reason: Any = error.get("status")
    for item in error.get("details") or ():
        if isinstance(item, dict) and isinstance(item.get("errorCode"), str):
            reason = item["errorCode"]
    message = error.get("message")
    detail = " ".join(str(x) for x in (reason, message) if x) or None
    return detail, (f"fcm_{str(reason).lower()}" if reason else None)


def integration(settings: Settings, engine: Engine) -> Integration:
    return PushIntegration(settings)
