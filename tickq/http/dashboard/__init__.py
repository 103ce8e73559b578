"""The operators' web dashboard at /dashboard, served by the API's own process.

Server-rendered pages (Jinja2, autoescaped) over the same functions as the API routes, a
session cookie standing for a token (`session`), role rules read off the API routes (`guard`),
live counts over Server-Sent Events (`live`), and a stylesheet and a small script served from
`static/`. Nothing is fetched from the network, and nothing needs building.

`setup(app)` adds it to an application made by `make_app`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tickq.http.dashboard import actions, live, ops, pages
from tickq.http.dashboard.guard import PREFIX
from tickq.http.dashboard.render import JINJA, environment
from tickq.http.dashboard.session import SIGNER, SessionSigner
from tickq.http.keys import SETTINGS

STATIC = Path(__file__).parent / "static"

#: every dashboard route, the static files included
routes: tuple[web.AbstractRouteDef, ...] = (
    *pages.routes, *ops.routes, *actions.routes, *live.routes,
    web.static(f"{PREFIX}/static", STATIC))


def setup(app: web.Application) -> None:
    """Serve the dashboard from `app` (whose settings and verifier are already set)."""
    app[JINJA] = environment()
    app[SIGNER] = SessionSigner.from_settings(app[SETTINGS])
    app[live.STREAMS] = live.Streams()
    app.on_shutdown.append(live.close_streams)
    app.add_routes(routes)


__all__ = ["PREFIX", "routes", "setup"]
