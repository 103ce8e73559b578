"""Who may open which dashboard page and take which action.

The dashboard keeps no rules of its own: the roles of each action are read off the API route
doing the same thing (`access.roles_of` of the handler, as `@require` left them), and the
dashboard's handlers are wrapped in `@require` with those roles. A page offers an action only to
a caller whose role the API would admit, and a forced POST is refused by the same check (403).

`signed_in` is the dashboard's own authentication (its routes are public to the bearer-token
middleware): the session cookie stands for a token, whose `Principal` is put where the API's
handlers expect it, so `require`, `can_see` and the audit trail work unchanged. For a
state-changing request it also checks the CSRF token.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from tickq.errors import AuthenticationError
from tickq.http import alerts, dlq, limits, metrics_json, queues, schedules
from tickq.http.access import RouteHandler, roles_of
from tickq.http.auth import Principal, Role
from tickq.http.dashboard.session import SESSION, check_csrf, current
from tickq.http.keys import PRINCIPAL

PREFIX = "/dashboard"


def _roles(handler: RouteHandler) -> tuple[Role, ...]:
    found = roles_of(handler)
    if found is None:
        raise ValueError(f"{handler.__name__} admits any caller; name its roles with @require")
    return tuple(sorted(found))  # type: ignore[arg-type]


#: dashboard action -> the roles of the API route that does the same
ACTION_ROLES: Mapping[str, tuple[Role, ...]] = {
    "queue.pause": _roles(queues.pause_queue),
    "queue.resume": _roles(queues.resume_queue),
    "dlq.retry": _roles(dlq.retry_dlq),
    "dlq.discard": _roles(dlq.discard_dlq),
    "rate_limit.reset": _roles(limits.reset),
    "emergency.stop": _roles(limits.emergency_stop),
    "emergency.resume": _roles(limits.resume),
    "alert.acknowledge": _roles(alerts.acknowledge),
    "schedule.pause": _roles(schedules.pause_schedule),
    "schedule.resume": _roles(schedules.resume_schedule),
    "schedule.run": _roles(schedules.run_schedule),
}
#: pages whose API counterpart is limited to some roles (the others are open to every role)
PAGE_ROLES: Mapping[str, tuple[Role, ...]] = {
    "alerts": _roles(alerts.list_alerts),
    "schedules": _roles(schedules.list_schedules),
    "charts": _roles(metrics_json.metrics_throughput),
}


def may(caller: Principal, what: str) -> bool:
    """May `caller` take action (or see page) `what`?"""
    roles = ACTION_ROLES.get(what) or PAGE_ROLES.get(what)
    return roles is None or caller.role in roles


def allowed(caller: Principal) -> dict[str, bool]:
    """Every action and restricted page, and whether `caller` may: for the templates."""
    return {name: caller.role in roles for name, roles in {**ACTION_ROLES, **PAGE_ROLES}.items()}


def signed_in(handler: RouteHandler) -> RouteHandler:
    """Admit requests with a valid session (and, for POSTs, its CSRF token). Without one, a
    page load is sent to the sign-in form and anything else answers 401."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        session = current(request)
        if session is None:
            if request.method == "GET":
                target = request.path_qs if request.path != PREFIX else PREFIX
                raise web.HTTPSeeOther(f"{PREFIX}/login?{urlencode({'next': target})}")
            raise AuthenticationError("sign in to the dashboard first", code="missing_session")
        request[SESSION] = session
        request[PRINCIPAL] = session.principal
        await check_csrf(request, session)
        return await handler(request)

    return checked


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path, never another site."""
    if (raw and raw.startswith(PREFIX) and not raw.startswith("//") and "\\" not in raw
            and "\n" not in raw and "\r" not in raw):
        return raw
    return PREFIX
