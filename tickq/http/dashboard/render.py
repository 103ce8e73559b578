"""Rendering dashboard pages: one Jinja2 environment per application, autoescaped, and the
headers every page carries.

Pages are complete without JavaScript; `static/dashboard.js` only adds live counts and small
conveniences. The Content-Security-Policy admits scripts and styles from this origin only: no
inline script, no inline style attribute, nothing from the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from tickq.http.dashboard.guard import allowed
from tickq.http.dashboard.session import SESSION, SIGNER
from tickq.http.keys import ENGINE, REQUEST_ID

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: `same-origin` rather than the API's `no-referrer`: with no referrer at all, Chromium sends
#: `Origin: null` on form posts, and the dashboard's own posts should name their origin
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin"}

JINJA = web.AppKey("tickq.dashboard.jinja", jinja2.Environment)

#: what `?done=` after an action may say (never text from the query string itself)
NOTICES: Mapping[str, str] = {
    "retried": "Jobs put back to waiting: {n}.",
    "retry-failed": "Jobs that could not be retried: {n} (see the list).",
    "discarded": "Jobs discarded: {n}.",
    "reset": "Rate limiter reset.",
    "stopped": "Emergency stop in force.",
    "resumed": "Provider resumed.",
    "acknowledged": "Alert acknowledged.",
    "paused": "Queue paused.",
    "queue-resumed": "Queue resumed.",
    "ran": "Schedule job enqueued.",
    "schedule-paused": "Schedule paused.",
    "schedule-resumed": "Schedule resumed.",
    "nothing": "Nothing was selected.",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tickq.http.dashboard", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["age"] = age
    return env


def when(ts: float | None) -> str:
    """Epoch seconds as `2026-01-05 09:00:00 UTC` ("" for None)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    """A duration the way an operator reads it: 42 s, 3 min, 2.5 h, 4 d."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def notice(request: web.Request) -> str | None:
    text = NOTICES.get(request.query.get("done", ""))
    if text is None:
        return None
    raw = request.query.get("n", "")
    return text.format(n=int(raw) if raw.isdigit() and len(raw) < 7 else 0)


def render(request: web.Request, template: str, context: Mapping[str, Any], *,
           status: int = 200) -> web.Response:
    """The page `template` with the caller, their permissions and CSRF token added."""
    session = request.get(SESSION)
    base: dict[str, Any] = {"caller": None, "can": {}, "csrf": "", "notice": notice(request),
                            "path": request.path, "request_id": request.get(REQUEST_ID),
                            "now": request.app[ENGINE].clock.now()}
    if session is not None:
        base.update(caller=session.principal, can=allowed(session.principal),
                    csrf=request.app[SIGNER].csrf_token(session.session_id))
    html = request.app[JINJA].get_template(template).render({**base, **context})
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


def see_other(location: str) -> web.Response:
    """A 303 redirect, returned rather than raised so that `audited` records it as the
    success it is."""
    return web.Response(status=303, headers={"Location": location})


def done(path: str, what: str, n: int | None = None) -> web.Response:
    """The redirect after an action (post/redirect/get), saying what happened."""
    query = f"done={what}" + (f"&n={n}" if n is not None else "")
    return see_other(f"{path}?{query}")
