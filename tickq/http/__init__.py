"""The aiohttp application. `make_app(settings, engine)` builds it from route modules."""

from __future__ import annotations

from tickq.http.app import make_app
from tickq.http.keys import ENGINE, SETTINGS

__all__ = ["ENGINE", "SETTINGS", "make_app"]
