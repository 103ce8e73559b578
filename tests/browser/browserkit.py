"""Shared pieces of the browser tests: the real app on a free 127.0.0.1 port, Chromium, tokens
and screenshots.

The browser is Debian's Chromium (`/usr/bin/chromium`, or the one `TICKQ_CHROMIUM` names),
driven by Playwright; Playwright's own browser downloads are never used, so the tests work where
only the distribution's packages can be installed. `make test` installs both the Python package
and the Debian package.

When either is missing the test is skipped with the reason, unless `CI=true`: there it fails,
so a CI run cannot pass without having opened a page (the same rule as PostgreSQL in
tests/storage/pg.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from tickq.engine.engine import Engine
from tickq.http import make_app
from tickq.http.auth import mint_token
from tickq.settings import Settings, load_settings
from tickq.storage.memory import MemoryStore

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Error, Page

CHROMIUM = os.environ.get("TICKQ_CHROMIUM", "/usr/bin/chromium")
#: containers run as root without user namespaces (no sandbox), without a GPU and with a small
#: /dev/shm; none of that matters to what the tests look at
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
#: screenshots land here for a person to look at; the folder is ignored by git
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SECRET = "tickq-browser-test-secret-long-enough-0123456789"

_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def missing_browser() -> str:
    """What the browser tests lack on this machine, or "" when nothing."""
    if importlib.util.find_spec("playwright") is None:
        return ("the playwright Python package is not installed "
                "(`make test` installs it with the dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        return (f"no Chromium at {CHROMIUM} (`make browser` installs Debian's chromium package; "
                "TICKQ_CHROMIUM names another executable)")
    return ""


def require_browser() -> None:
    """Skip (or, with CI=true, fail) the calling test when it cannot drive a browser."""
    why = missing_browser()
    if not why:
        return
    message = f"browser tests cannot run: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires them", pytrace=False)
    pytest.skip(message)


class LiveServer:
    """The application listening on 127.0.0.1: what a browser is pointed at."""

    def __init__(self, base_url: str, settings: Settings, engine: Engine) -> None:
        self.base_url = base_url
        self.settings = settings
        self.engine = engine

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def token(self, role: str = "admin", tenant: str = "t1", user: str = "u1",
              venues: Iterable[str] = (), *, ttl_s: float = 600) -> str:
        """A bearer token this server accepts (a venue_admin gets venue v1 unless told)."""
        if role == "venue_admin" and not venues:
            venues = ("v1",)
        return mint_token(SECRET, role=role, tenant_id=tenant, user_id=user, venues=venues,
                          ttl_s=ttl_s)


@asynccontextmanager
async def serve_live(env: Mapping[str, str] | None = None) -> AsyncIterator[LiveServer]:
    """The real app (make_app) over an engine on the memory store, served by aiohttp on a free
    port of 127.0.0.1 in the running event loop. API rate limits and the scheduler are off unless
    `env` turns them on: a page load fetches several resources, and schedules add jobs no test
    asked for."""
    settings = load_settings({"TICKQ_DATABASE_URL": "memory://", "JWT_SECRET": SECRET,
                              "API_RATE_LIMIT_ENABLED": "false",
                              "TICKQ_SCHEDULER_ENABLED": "false", **(env or {})})
    engine = Engine(MemoryStore(), shutdown_grace_s=0.5)
    runner = web.AppRunner(make_app(settings, engine), shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield LiveServer(f"http://{host}:{port}", settings, engine)
    finally:
        await runner.cleanup()


def watch_console(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions. Chromium
    reports what a Content-Security-Policy refused (a style, a script, an image) as a console
    error, so an empty list after a load also means the policy blocked nothing."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text} ({message.location.get('url', '')})")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return problems


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as tests/artifacts/<name>.png and return the path."""
    if not _ARTIFACT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name must be letters, digits, '.', '_' or '-': {name!r}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
