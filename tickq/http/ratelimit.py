"""Per-caller request limits on the HTTP API (spec seed-003, "Rate Limiting (API Level)").

These protect the service from its callers; they are unrelated to the provider limits of
`tickq.engine.limiter`, which protect Stripe and friends from the jobs. That limiter is a token
bucket per provider with concurrency slots, stops and cooldowns; here the need is a plain count
per caller per minute that a client can read back from headers, so a fixed window is used:
`X-RateLimit-Remaining` is then an exact count and `X-RateLimit-Reset` the moment it refills.
(A fixed window lets a caller spend two windows' worth around a boundary; for a per-minute
abuse guard that is an accepted trade for exact, explainable headers.)

Who is counted: the token's `tenant:user` for an authenticated request, else the client's IP
(`request.remote`; forwarding headers are not trusted, since any client can set them). The
middleware runs inside authentication, so on protected routes only verified callers are counted
by identity; a request that fails authentication answers 401 before it is counted.

What is counted: every request against the caller's overall budget (by role: service callers
get a much larger one, since the platform's services enqueue its work), and enqueues and
`/metrics` scrapes also against their own, smaller budgets. A refused request consumes nothing.
Health probes are never limited: an orchestrator that cannot probe restarts a healthy service.
Nor are Stripe's webhook deliveries: they come from a handful of Stripe addresses in bursts (a
batch of payouts settles at once), are authenticated by their signature, and one refused is an
event that arrives late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tickq.clock import Clock
from tickq.http.auth import Principal
from tickq.http.keys import ENGINE, PRINCIPAL, REQUEST_ID
from tickq.http.responses import error_response
from tickq.settings import Settings

#: the window every limit is counted over
WINDOW_S = 60.0
#: windows kept before stale ones are swept (bounds memory under many distinct callers)
MAX_WINDOWS = 50_000

#: routes (canonical paths) never limited
EXEMPT_PATHS = frozenset({"/health", "/api/v1/queue/health", "/api/v1/queue/health/ready",
                          "/api/v1/queue/webhooks/stripe"})
#: (the dashboard's script and stylesheet too: a page load is one request, not three)
EXEMPT_PREFIXES = ("/health/", "/dashboard/static")
#: enqueue routes, limited by API_RATE_LIMIT_JOBS_PER_MIN
ENQUEUE_PATHS = frozenset({"/api/v1/queue/jobs", "/api/v1/queue/jobs/batch",
                           "/api/v1/queue/jobs/schedule"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check, with what the headers report: the most constraining limit."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    retry_after_s: float


class WindowCounter:
    """Fixed-window request counts per key, on an injected clock (pure; no I/O)."""

    def __init__(self, clock: Clock, window_s: float = WINDOW_S,
                 max_windows: int = MAX_WINDOWS) -> None:
        self._clock = clock
        self._window_s = window_s
        self._max = max_windows
        #: key -> (window start, count)
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, limits: list[tuple[str, int]]) -> Verdict:
        """Count one request against every `(key, limit)` if all admit it; otherwise count
        nothing and report the limit that refused."""
        now = self._clock.now()
        start = now - (now % self._window_s)
        reset_at = start + self._window_s
        counts = []
        for key, _limit in limits:
            began, used = self._windows.get(key, (start, 0))
            counts.append(used if began == start else 0)
        refused = [(limit, used) for (_, limit), used in zip(limits, counts, strict=True)
                   if used >= limit]
        if refused:
            limit = min(refused)[0]
            return Verdict(False, limit, 0, reset_at, max(0.0, reset_at - now))
        if len(self._windows) >= self._max:
            self._sweep(start)
        for (key, _), used in zip(limits, counts, strict=True):
            self._windows[key] = (start, used + 1)
        limit, left = min(((limit, limit - used - 1) for (_, limit), used
                           in zip(limits, counts, strict=True)), key=lambda p: p[1])
        return Verdict(True, limit, left, reset_at, 0.0)

    def _sweep(self, current: float) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[0] >= current}

    def __len__(self) -> int:
        return len(self._windows)


def caller_key(request: web.Request) -> str:
    """`tenant:user` of the verified token, else `ip:<address>`."""
    caller: Principal | None = request.get(PRINCIPAL)
    if caller is not None:
        return f"{caller.tenant_id}:{caller.user_id}"
    return f"ip:{request.remote or 'unknown'}"


def role_limit(settings: Settings, caller: Principal | None) -> int:
    """The caller's overall budget per window, by role; anonymous callers get the user one."""
    role = caller.role if caller is not None else None
    if role == "service":
        return settings.api_rate_limit_service_per_min
    if role == "admin" and settings.api_rate_limit_admin_per_min is not None:
        return settings.api_rate_limit_admin_per_min
    return settings.api_rate_limit_user_per_min


def limits_for(settings: Settings, request: web.Request, path: str) -> list[tuple[str, int]]:
    """The `(counter key, limit)` pairs a request is counted against."""
    who = caller_key(request)
    caller: Principal | None = request.get(PRINCIPAL)
    overall = role_limit(settings, caller)
    out = [(f"all|{who}", overall)]
    if request.method == "POST" and path in ENQUEUE_PATHS and not (
            caller is not None and caller.role == "service"):
        out.append((f"jobs|{who}", min(overall, settings.api_rate_limit_jobs_per_min)))
    elif path == "/metrics":
        out.append((f"metrics|{who}", settings.api_rate_limit_metrics_per_min))
    return out


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def api_rate_limit(settings: Settings) -> Middleware:
    """The middleware for `settings` (a pass-through when API limits are off). Time comes from
    the engine's clock, so tests drive windows with a `FakeClock`."""
    counter: WindowCounter | None = None

    @web.middleware
    async def limit_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not settings.api_rate_limit_on:
            return await handler(request)
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        if is_exempt(path):
            return await handler(request)
        nonlocal counter
        if counter is None:
            counter = WindowCounter(request.app[ENGINE].clock)
        verdict = counter.check(limits_for(settings, request, path))
        headers = {"X-RateLimit-Limit": str(verdict.limit),
                   "X-RateLimit-Remaining": str(verdict.remaining),
                   "X-RateLimit-Reset": str(math.ceil(verdict.reset_at))}
        if not verdict.allowed:
            retry = max(1, math.ceil(verdict.retry_after_s))
            response = error_response(
                429, "rate_limited", f"too many requests: the limit is {verdict.limit} per "
                f"{int(WINDOW_S)} s; retry in {retry} s", request_id=request.get(REQUEST_ID))
            response.headers.update(headers)
            response.headers["Retry-After"] = str(retry)
            return response
        served = await handler(request)
        if not served.prepared:
            served.headers.update(headers)
        return served

    return limit_requests


__all__ = ["Verdict", "WindowCounter", "api_rate_limit", "caller_key", "role_limit"]
