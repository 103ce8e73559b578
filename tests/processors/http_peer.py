"""Real HTTP peers for the SMS, push and webhook tests: aiohttp servers on 127.0.0.1.

Each peer speaks its provider's wire format and checks what it receives the way the provider
would: `twilio` wants HTTP basic auth with the account's sid and token and the form fields of
the Messages API; `push_gateway` wants the bearer key and an FCM v1 message; `webhook_receiver`
verifies `X-Tickq-Signature` over the raw body with `verify_signature`. A request that fails a
check gets the provider's own error answer, so a test that passes proves the request was right.
A test scripts answers (`Peer.answers`) to make the peer fail in a chosen way; once the script
is used up, the peer answers as the provider does on success.

`service` runs an engine with one integration made through the factory path the service uses,
started in the service's order (integrations, then the engine; closed in reverse), with retries
made fast so a retry scenario takes milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

import tickq
from tickq.engine.breaker import BreakerStatus
from tickq.processors import Integrations, build_integrations
from tickq.processors.outbound import verify_signature
from tickq.settings import load_settings

HOST = "127.0.0.1"
FAST = tickq.BackoffPolicy(kind=tickq.BackoffKind.FIXED, base_s=0.01, cap_s=0.01, jitter=False)
COMPLETED, FAILED, WAITING = tickq.JobState.COMPLETED, tickq.JobState.FAILED, \
    tickq.JobState.WAITING
SECRET = "whsec-test-signing-secret-0123456789"


@dataclass
class Seen:
    """One request as the peer received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Answer:
    """A scripted answer; `delay_s` holds the reply back (longer than the client's timeout,
    it makes the request time out)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Check = Callable[[Seen], Answer | None]
Success = Callable[[Seen], Answer]


class Peer:
    """An HTTP server on 127.0.0.1 that records every request, rejects bad ones with `check`,
    and otherwise answers from its script or with `success`."""

    def __init__(self, check: Check, success: Success) -> None:
        self.check = check
        self.success = success
        self.seen: list[Seen] = []
        self.answers: deque[Answer] = deque()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def __aenter__(self) -> Peer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path_qs, request.headers.copy(), await request.read())
        self.seen.append(seen)
        answer = self.check(seen)
        if answer is None:
            answer = self.answers.popleft() if self.answers else self.success(seen)
        if answer.delay_s:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay_s)
        body = answer.body
        if isinstance(body, bytes | str):
            return web.Response(status=answer.status, body=body, headers=answer.headers)
        return web.json_response(body, status=answer.status, headers=answer.headers)


# --- Twilio --------------------------------------------------------------------------------

TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
TWILIO_FROM = "+15005550006"
_sids = itertools.count(1)


def twilio_error(status: int, code: int, message: str) -> Answer:
    """An error as Twilio's API writes it."""
    return Answer(status, {"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})


def _twilio_check(seen: Seen) -> Answer | None:
    expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    if seen.headers.get("Authorization") != expected:
        return twilio_error(401, 20003, "Authenticate")
    if seen.method != "POST" or seen.path != f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
        return twilio_error(404, 20404, "The requested resource was not found")
    if not seen.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return twilio_error(400, 20001, "Content-Type must be form-encoded")
    form = twilio_form(seen)
    for name in ("To", "From", "Body"):
        if not form.get(name):
            return twilio_error(400, 21604 if name == "To" else 21602,
                                f"A '{name}' parameter is required.")
    return None


def twilio_form(seen: Seen) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(seen.body.decode(), strict_parsing=True).items()}


def _twilio_success(seen: Seen) -> Answer:
    form = twilio_form(seen)
    sid = f"SM{next(_sids):032x}"
    return Answer(201, {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"],
                        "body": form["Body"], "account_sid": TWILIO_SID, "num_segments": "1",
                        "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/{sid}.json"})


def twilio() -> Peer:
    return Peer(_twilio_check, _twilio_success)


# --- push gateway (FCM HTTP v1 shape) -----------------------------------------------------------

PUSH_KEY = "push-gateway-key-for-tests"
PUSH_PATH = "/v1/projects/tickq-test/messages:send"
_names = itertools.count(1)


def fcm_error(status: int, reason: str, message: str, error_code: str | None = None) -> Answer:
    """An error as FCM's HTTP v1 API writes it."""
    error: dict[str, Any] = {"code": status, "message": message, "status": reason}
    if error_code is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": error_code}]
    return Answer(status, {"error": error})


def _push_check(seen: Seen) -> Answer | None:
    if seen.headers.get("Authorization") != f"Bearer {PUSH_KEY}":
        return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                                 "credentials.")
    if seen.method != "POST" or seen.path != PUSH_PATH:
        return fcm_error(404, "NOT_FOUND", "Not found")
    try:
        message = seen.json()["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    targets = [k for k in ("token", "topic", "condition") if k in message]
    note = message.get("notification", {})
    data = message.get("data", {})
    if len(targets) != 1 or not isinstance(note.get("title"), str) \
            or not isinstance(note.get("body"), str) \
            or not all(isinstance(v, str) for v in data.values()):
        return fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                         "INVALID_ARGUMENT")
    return None


def _push_success(seen: Seen) -> Answer:
    return Answer(200, {"name": f"projects/tickq-test/messages/0:{next(_names)}"})


def push_gateway() -> Peer:
    return Peer(_push_check, _push_success)


# --- webhook receiver ---------------------------------------------------------------------------


def _webhook_check(seen: Seen) -> Answer | None:
    if not verify_signature(SECRET, seen.headers.get("X-Tickq-Signature"), seen.body,
                            tolerance_s=60, now=time.time()):
        return Answer(401, {"error": "bad signature"})
    body = seen.json()
    if (seen.headers.get("Content-Type") != "application/json"
            or seen.headers.get("X-Tickq-Event") != body.get("event")
            or seen.headers.get("X-Tickq-Delivery") != body.get("id")
            or set(body) != {"id", "event", "createdAt", "data"}):
        return Answer(400, {"error": "malformed delivery"})
    return None


def webhook_receiver() -> Peer:
    return Peer(_webhook_check, lambda seen: Answer(200, {"received": True}))


# --- an engine with one integration -------------------------------------------------------------


@dataclass
class Service:
    """A running engine, its integrations and every event it emitted (jobs copied as they were
    at the time)."""

    engine: tickq.Engine
    integrations: Integrations
    events: list[tickq.Event] = field(default_factory=list)

    def record(self, event: tickq.Event) -> None:
        self.events.append(tickq.Event(event.kind, event.job.copy(), event.at, event.reason))

    async def event(self, kind: tickq.EventKind, job_id: str,
                    timeout: float = 5.0) -> tickq.Event:
        """The first `kind` event of the job, waiting for it (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.kind is kind and e.job.id == job_id:
                    return e
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind.value} event for job {job_id} within "
                                     f"{timeout}s: {[e.kind.value for e in self.events]}")
            await asyncio.sleep(0.01)

    def breaker(self, provider: str) -> BreakerStatus:
        return self.engine.providers.breakers.get(provider).status(self.engine.clock.now())


@asynccontextmanager
async def service(factory: str, env: Mapping[str, str], *, url: str = "memory://",
                  processors: Mapping[str, Callable[[tickq.Job], Any]] | None = None
                  ) -> AsyncIterator[Service]:
    """An engine on `url` with the integration `factory` makes from `env` (and `processors`
    registered first), fast retries on every built-in type, started as the service starts it."""
    settings = load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": url, **env})
    engine = tickq.Engine(tickq.open_store(url), shutdown_grace_s=1.0)
    for jt in engine.registry.types:
        engine.registry.add_type(dataclasses.replace(jt, backoff=FAST), replace=True)
    for type_name, fn in (processors or {}).items():
        engine.register(type_name, fn)
    integrations = build_integrations(settings, engine, factories=(factory,))
    integrations.install()
    running = Service(engine, integrations)
    engine.events.subscribe(running.record)
    await integrations.start()
    try:
        await engine.start()
        try:
            yield running
        finally:
            await engine.stop()
    finally:
        await integrations.close()


async def arrived(peer: Peer, count: int, timeout: float = 5.0) -> list[Seen]:
    """The peer's requests once it has `count` of them (bounded wait)."""
    deadline = time.monotonic() + timeout
    while len(peer.seen) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the peer got {len(peer.seen)} requests, not {count}, within "
                                 f"{timeout}s")
        await asyncio.sleep(0.01)
    return list(peer.seen)
