"""Who may call what, and who may see which job.

Every route needs a valid bearer token except the ones listed as public (probes, the
Prometheus scrape, and the dashboard, which signs its users in with a session cookie of its own:
`tickq.http.dashboard.guard`). Roles are checked per route with `@require(...)`; which jobs a
caller may see is one function, `can_see`, used by every job route so that reads, listings,
retries and cancels agree. A job the caller may not see is reported as not found (404), never
as forbidden: a 403 would confirm that the id exists in another tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from tickq.engine.job import Job
from tickq.errors import AuthenticationError, PermissionDeniedError
from tickq.http.auth import ROLES, Principal, Role
from tickq.http.keys import PRINCIPAL, VERIFIER

#: routes (by their canonical path) that need no token; later areas add theirs here
PUBLIC_PATHS: frozenset[str] = frozenset({"/health", "/metrics", "/api/v1/queue/health",
                                          "/api/v1/queue/health/ready",
                                          "/api/v1/queue/openapi.json", "/api/v1/queue/docs",
                                          "/api/v1/queue/webhooks/stripe", "/dashboard"})
PUBLIC_PREFIXES: tuple[str, ...] = ("/health/", "/dashboard/")

#: the attribute `require` leaves on a handler: the roles it admits (for docs and OpenAPI)
ROLES_ATTR: Final = "tickq_roles"

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_public(canonical: str) -> bool:
    return canonical in PUBLIC_PATHS or canonical.startswith(PUBLIC_PREFIXES)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the bearer token of every non-public route and attach the `Principal`.

    Public-ness is decided by the route that matched, not by the raw path, so no spelling of a
    URL can reach a protected handler through a public prefix. Unknown routes and wrong methods
    fall through to their 404/405: telling a stranger that a path does not exist reveals
    nothing."""
    match = request.match_info
    if match.http_exception is not None:
        return await handler(request)
    if is_public(match.route.resource.canonical if match.route.resource else request.path):
        return await handler(request)
    request[PRINCIPAL] = request.app[VERIFIER].verify(bearer_token(request))
    return await handler(request)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        raise AuthenticationError("no bearer token; send Authorization: Bearer <JWT>",
                                  code="missing_token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthenticationError("the Authorization header must be 'Bearer <JWT>'",
                                  code="invalid_token")
    return token


def principal(request: web.Request) -> Principal:
    """The authenticated caller. Only protected routes have one; asking on a public route is a
    programming error and answers 401 rather than serving anonymously."""
    try:
        return request[PRINCIPAL]
    except KeyError:
        raise AuthenticationError("authentication required", code="missing_token") from None


def check_role(caller: Principal, *roles: Role) -> None:
    if caller.role not in roles:
        raise PermissionDeniedError(
            f"insufficient permissions: this action needs the role {' or '.join(roles)}")


def require(*roles: Role) -> Callable[[RouteHandler], RouteHandler]:
    """Route decorator admitting only callers with one of `roles` (403 for the rest).

        @routes.post("/api/v1/queue/jobs/{id}/retry")
        @require("admin", "venue_admin")
        async def retry(request: web.Request) -> web.Response: ...
    """
    unknown = set(roles) - ROLES
    if not roles or unknown:
        raise ValueError(f"require() needs roles from {sorted(ROLES)}, got {sorted(unknown)}")

    def wrap(handler: RouteHandler) -> RouteHandler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            check_role(principal(request), *roles)
            return await handler(request)

        setattr(checked, ROLES_ATTR, frozenset(roles))
        return checked

    return wrap


# --- which jobs a caller may see ---------------------------------------------------------


def can_see(caller: Principal, job: Job) -> bool:
    """Admins see every tenant. Everyone else sees only their tenant; within it a `user` sees
    only the jobs they enqueued, and a venue_admin only jobs of their venues (jobs that name no
    venue, such as an email, belong to the whole tenant)."""
    if caller.is_admin:
        return True
    if job.tenant_id != caller.tenant_id:
        return False
    if caller.role == "user":
        return job.user_id == caller.user_id
    if caller.role == "venue_admin":
        venue = venue_of(job.data)
        return venue is None or venue in caller.venues
    return True


def venue_of(data: Any) -> str | None:
    venue = data.get("venueId") if isinstance(data, Mapping) else None
    return venue if isinstance(venue, str) else None


#: job types whose effect reaches past the caller's own business, and the roles that may
#: enqueue them: moving a venue's money, reading a tenant's data, deleting data. Every other type
#: may be enqueued by any role that may enqueue at all.
TYPE_ROLES: Mapping[str, frozenset[str]] = {
    "refund-process": frozenset({"admin", "venue_admin", "service"}),
    "payout-process": frozenset({"admin", "venue_admin", "service"}),
    "generate-report": frozenset({"admin", "venue_admin", "service"}),
    "cleanup-old-data": frozenset({"admin", "service"}),
}
#: data fields naming the user a job acts for; a `user` may only name themselves
_USER_FIELDS = ("userId", "fromUserId")


def scope_problem(caller: Principal, data: Mapping[str, Any],
                  type_name: str | None = None) -> str | None:
    """Why `caller` may not enqueue a job of this type with this data, or None. Some types are
    for elevated roles only (`TYPE_ROLES`); a user cannot act for another user (nor move another
    user's ticket); a venue_admin cannot act for a venue outside their token's list, and their
    reports must name one of their venues."""
    allowed = TYPE_ROLES.get(type_name or "")
    if allowed is not None and caller.role not in allowed:
        return f"a {caller.role} may not enqueue {type_name} jobs"
    if caller.role == "user":
        for field in _USER_FIELDS:
            user = data.get(field)
            if user is not None and user != caller.user_id:
                return f"data.{field} must be your own user id"
    if caller.role == "venue_admin":
        venue = venue_of(data)
        if venue is not None and venue not in caller.venues:
            return f"venue {venue!r} is not one of the venues in your token"
        if venue is None and type_name == "generate-report":
            return "a venue_admin's report must name one of their venues (data.venueId)"
    return None


def roles_of(handler: Any) -> frozenset[str] | None:
    """The roles a handler admits (None: any authenticated caller, or public)."""
    roles = getattr(handler, ROLES_ATTR, None)
    return roles if isinstance(roles, frozenset) else None


def tenant_filter(caller: Principal, asked: str | None) -> str | None:
    """The tenant a listing is narrowed to: the one asked for, or (for everyone but admins)
    the caller's own; asking for another tenant is for admins only (403)."""
    if asked is None:
        return None if caller.is_admin else caller.tenant_id
    if caller.is_admin or asked == caller.tenant_id:
        return asked
    raise PermissionDeniedError("only admins may list another tenant's jobs")
