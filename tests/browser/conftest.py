"""Fixtures of the browser tests (helpers live in browserkit.py).

Each test gets its own Playwright driver and Chromium: both start in the test's own event loop
(asyncio_default_fixture_loop_scope is "function"), and a launch of Debian's Chromium takes
well under a second, so sharing one browser across tests would save little and would tie every
fixture of these tests to a wider loop scope. Each test also gets a fresh context (no cookies or
storage carried over) and page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, LiveServer, require_browser, serve_live

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

@pytest.fixture
async def live_server() -> AsyncIterator[LiveServer]:
    async with serve_live() as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield await context.new_page()
    finally:
        await context.close()
