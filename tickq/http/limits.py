"""Provider rate limits and circuit breakers under /api/v1/queue (spec seed-003 endpoints 12-16).

    GET  /rate-limits/status            every bucket (any role)                          200
    GET  /rate-limits/status/{key}      one provider's bucket (any role)                 200
    GET  /rate-limits/check/{service}   may a call go out now, and if not, when (any)    200
    POST /rate-limits/reset/{service}   full tokens, no cooldown, breaker closed (admin) 200
    POST /rate-limits/emergency-stop    stop one provider or all (admin)                 200
    POST /rate-limits/resume            lift the stop (admin)                            200
    GET  /breakers                      every provider's circuit breaker (any role)      200

A service is a provider a job type calls (`stripe-refunds`) or the bucket it spends from
(`stripe`); group members share their bucket, so stopping `stripe-refunds` stops all of Stripe.
Names the limiter, the breakers and the registered job types have never heard of are a 404
rather than a silently created, unlimited bucket: a typo in an emergency stop must not look
like it worked.

Numbers are the limiter's own, read at request time. The limiter uses infinity for "no limit"
(and for "not until resumed"); JSON has no infinity, so those are rendered as null. The spec's
`lastActivity` is not shown: the limiter does not record it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web

from tickq.clock import iso
from tickq.engine.engine import Engine
from tickq.engine.limiter import LimitStatus
from tickq.errors import NotFoundError
from tickq.http.access import require
from tickq.http.audit import audited, note
from tickq.http.body import parse, read_json
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schemas import ServiceBody

log = logging.getLogger(__name__)

PREFIX = "/api/v1/queue/rate-limits"
routes = web.RouteTableDef()

#: longer path segments are not provider names and are not looked up
MAX_SERVICE_CHARS = 64


def known_services(engine: Engine) -> set[str]:
    """Every name a limit route accepts: configured buckets and their group members, buckets
    used so far, breakers made so far, and the providers of registered job types."""
    gate = engine.providers
    names = set(gate.limiter.buckets) | set(gate.breakers.status(engine.clock.now()))
    for jt in engine.registry.types:
        if jt.provider is not None:
            names |= {jt.provider, gate.limiter.bucket_of(jt.provider)}
    return names


def service_named(engine: Engine, raw: str | None) -> str:
    """`raw` if it names a provider or bucket, else `NotFoundError` (404)."""
    if raw is None or len(raw) > MAX_SERVICE_CHARS or not (
            engine.providers.limiter.known(raw) or raw in known_services(engine)):
        shown = (raw or "")[:MAX_SERVICE_CHARS]
        raise NotFoundError(f"unknown service {shown!r}; known: "
                            f"{', '.join(sorted(known_services(engine)))}",
                            code="service_not_found")
    return raw


def finite(value: float) -> float | None:
    """`inf` (no limit) as None, since JSON has no infinity."""
    return None if math.isinf(value) else value


def ms(seconds: float) -> int | None:
    return None if math.isinf(seconds) else math.ceil(seconds * 1000)


def limit_view(engine: Engine, s: LimitStatus) -> dict[str, Any]:
    """One bucket in the spec's field names (`tokensAvailable`, `concurrent`, `config`...),
    plus what the limiter knows beyond them (stop, cooldown, decisions)."""
    cfg = engine.providers.limiter.config_of(s["provider"])
    return {
        "service": s["provider"], "bucket": s["bucket"], "unlimited": s["unlimited"],
        "tokensAvailable": _round(finite(s["tokens"])), "concurrent": s["in_flight"],
        "maxConcurrent": finite(s["max_concurrent"]), "stopped": s["stopped"],
        "cooldownRemainingMs": ms(s["cooldown_left_s"]), "rateLimited": s["limited"],
        "waitTimeMs": ms(s["wait_s"]), "decisions": s["decisions"],
        "config": None if cfg is None else {
            "maxPerSecond": cfg.rate_per_s, "maxConcurrent": cfg.max_concurrent,
            "burstSize": cfg.burst, "cooldownMs": round(cfg.cooldown_s * 1000)},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@routes.get(f"{PREFIX}/status")
async def status_all(request: web.Request) -> web.Response:
    """Every bucket with state, by bucket name."""
    engine = request.app[ENGINE]
    limiter = engine.providers.limiter
    now = engine.clock.now()
    return json_response({name: limit_view(engine, limiter.status(name, now))
                          for name in sorted(limiter.buckets)})


@routes.get(f"{PREFIX}/status/{{key}}")
async def status_one(request: web.Request) -> web.Response:
    """The bucket behind one provider, keyed by the name asked for (spec endpoint 12)."""
    engine = request.app[ENGINE]
    key = service_named(engine, request.match_info["key"])
    status = engine.providers.limiter.status(key, engine.clock.now())
    return json_response({key: limit_view(engine, status)})


@routes.get(f"{PREFIX}/check/{{service}}")
async def check(request: web.Request) -> web.Response:
    """Would a job calling `service` start now (spec endpoint 13)? The answer is the gate's:
    the rate limit and the circuit breaker. `waitTimeMs` is null while the service is stopped
    (it waits for a resume, not for time); while every slot is busy it is a lower bound."""
    engine = request.app[ENGINE]
    service = service_named(engine, request.match_info["service"])
    gate, now = engine.providers, engine.clock.now()
    s = gate.limiter.status(service, now)
    opens_at = gate.breakers.retry_at(service, now)
    open_left = 0.0 if opens_at is None else max(0.0, opens_at - now)
    reason = ("stopped" if s["stopped"] else "circuit_open" if open_left > 0
              else "cooldown" if s["cooldown_left_s"] > 0
              else "concurrency" if s["in_flight"] >= s["max_concurrent"]
              else "no_tokens" if s["wait_s"] > 0 else None)
    wait = max(s["wait_s"], open_left)
    wait_ms = ms(wait)
    return json_response({
        "service": service, "bucket": s["bucket"], "rateLimited": reason is not None,
        "reason": reason, "waitTimeMs": wait_ms,
        "waitTimeSeconds": None if wait_ms is None else math.ceil(wait_ms / 1000)})


@routes.post(f"{PREFIX}/reset/{{service}}")
@audited("rate_limit.reset")
@require("admin")
async def reset(request: web.Request) -> web.Response:
    """Full tokens, no cooldown and a closed breaker (spec endpoint 14). Calls in flight keep
    their slots (they will give them back; forgetting them would overrun the cap), and an
    emergency stop stays in force: only a resume lifts it."""
    engine = request.app[ENGINE]
    service = service_named(engine, request.match_info["service"])
    engine.reset_provider(service)
    note(request, service)
    return json_response({"service": service, "status": "reset",
                          "message": f"Rate limiter for {service} has been reset"})


@routes.post(f"{PREFIX}/emergency-stop")
@audited("emergency.stop")
@require("admin")
async def emergency_stop(request: web.Request) -> web.Response:
    """Start no job that calls the service (every service without one) until a resume (spec
    endpoint 15). Running jobs finish; waiting ones wait without spending attempts."""
    engine = request.app[ENGINE]
    service = await _service_of(request)
    engine.emergency_stop(service)
    note(request, service or "*")
    which = "All rate limiters have" if service is None else f"The rate limiter for {service} has"
    return json_response({"status": "stopped", "service": service,
                          "message": f"{which} been paused"})


@routes.post(f"{PREFIX}/resume")
@audited("emergency.resume")
@require("admin")
async def resume(request: web.Request) -> web.Response:
    """Lift an emergency stop (spec endpoint 16); parked jobs start again at once, within
    their limits. Resuming everything also lifts every per-service stop."""
    engine = request.app[ENGINE]
    service = await _service_of(request)
    engine.resume_provider(service)
    note(request, service or "*")
    which = "All rate limiters have" if service is None else f"The rate limiter for {service} has"
    return json_response({"status": "resumed", "service": service,
                          "message": f"{which} been resumed"})


@routes.get("/api/v1/queue/breakers")
async def breakers(request: web.Request) -> web.Response:
    """Every provider bucket's circuit breaker (configured buckets and any used so far): a
    breaker never tripped shows as closed with empty counters."""
    engine = request.app[ENGINE]
    board, now = engine.providers.breakers, engine.clock.now()
    names = set(engine.providers.limiter.buckets) | set(board.status(now))
    out: dict[str, Any] = {}
    for name in sorted(names):
        b = board.get(name).status(now)
        out[name] = {"state": b["state"], "consecutiveFailures": b["consecutive_failures"],
                     "windowCalls": b["window_calls"], "windowFailures": b["window_failures"],
                     "failureRate": round(b["failure_rate"], 4),
                     "retryAt": iso(b["retry_at"]), "openRemainingMs": ms(b["open_left_s"]),
                     "probesInFlight": b["probes_in_flight"],
                     "probeSuccesses": b["probe_successes"], "rejected": b["rejected"]}
    return json_response({"breakers": out})


async def _service_of(request: web.Request) -> str | None:
    raw = await read_json(request, optional=True)
    body = ServiceBody() if raw is None else parse(ServiceBody, raw)
    return None if body.service is None else service_named(request.app[ENGINE], body.service)

