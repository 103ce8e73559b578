"""The browser chain end to end: Chromium loads the server-rendered API docs from the live app,
renders them under their strict CSP without a refusal, and leaves a screenshot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from browserkit import LiveServer, screenshot, watch_console

from tickq import __version__
from tickq.http.openapi import DOCS_CSP, DOCS_PATH

if TYPE_CHECKING:
    from playwright.async_api import Page, Route


async def test_docs_page_renders_under_its_csp(live_server: LiveServer, page: Page) -> None:
    problems = watch_console(page)
    response = await page.goto(live_server.url(DOCS_PATH), wait_until="load")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == DOCS_CSP

    title = f"tickq job queue API {__version__}"
    assert await page.title() == title
    assert await page.locator("h1").inner_text() == title
    assert await page.locator("thead th").all_inner_texts() == [
        "Method", "Path", "Summary", "Roles", "Responses"]
    enqueue = page.locator("tbody tr", has_text="/api/v1/queue/jobs").filter(has_text="POST")
    assert await enqueue.count() >= 1
    # The inline stylesheet is allowed by its hash only: had the CSP refused it, the table
    # would keep the browser's default separate borders.
    assert await page.locator("table").evaluate(
        "t => getComputedStyle(t).borderCollapse") == "collapse"
    assert problems == []

    path = await screenshot(page, "api-docs")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_console_watch_reports_a_csp_refusal(page: Page) -> None:
    """The check above means something only if a refused style does reach the console."""
    async def fulfil(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html",
                            headers={"Content-Security-Policy": "default-src 'none'"},
                            body="<!doctype html><title>p</title><style>b{color:red}</style>")

    await page.route("http://probe.invalid/", fulfil)
    problems = watch_console(page)
    await page.goto("http://probe.invalid/", wait_until="load")
    assert any("Content Security Policy" in p for p in problems), problems
