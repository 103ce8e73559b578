"""The dashboard in Chromium: signing in, live counts, the dead-letter queue, an emergency stop,
the monitoring role and CSRF, with a screenshot of every page (light, dark and phone-sized)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from browserkit import LiveServer, screenshot, watch_console

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.errors import PermanentError
from tickq.storage.base import NewAlert

if TYPE_CHECKING:
    from playwright.async_api import Page

EMAIL = {"to": "fan@example.com", "template": "welcome"}
PUSH = {"userId": "u1", "title": "Doors open", "body": "See you at 7"}


async def sign_in(server: LiveServer, page: Page, role: str = "admin") -> None:
    await page.goto(server.url("/dashboard/login"))
    await page.get_by_label("Token").fill(server.token(role))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(server.url("/dashboard"))


async def dead_letter(engine: Engine) -> Job:
    """A push job its provider refused for good: in the dead-letter queue."""
    def refuse(job: Job) -> None:
        raise PermanentError("device token rejected")

    engine.register("send-push", refuse)
    failed = await engine.enqueue("send-push", PUSH, tenant_id="t1", user_id="u1")
    return await engine.wait(failed.id, timeout=5)


def cell(page: Page, queue: str, count: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] td[data-count="{count}"]')


async def test_signing_in_and_every_page_renders(live_server: LiveServer, page: Page) -> None:
    from playwright.async_api import expect

    problems = watch_console(page)
    engine = live_server.engine
    engine.register("send-email", lambda job: {"sent": True})
    await engine.pause("money")
    done = await engine.enqueue("send-email", EMAIL, tenant_id="t1", user_id="u1")
    await engine.wait(done.id, timeout=5)
    await engine.store.alert_insert(NewAlert(
        severity="warning", alert_type="queue_depth", message="Money queue is deep",
        queue_name="money", metric_value=60.0, threshold_value=50.0,
        created_at=engine.clock.now()))

    await page.goto(live_server.url("/dashboard/jobs"))
    await expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
    await screenshot(page, "dashboard-login")
    await page.get_by_label("Token").fill("not a token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not a JWT")
    await page.get_by_label("Token").fill(live_server.token())
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(live_server.url("/dashboard/jobs"))

    pages = {"overview": "/dashboard", "jobs": "/dashboard/jobs",
             "job": f"/dashboard/jobs/{done.id}", "dlq": "/dashboard/dlq",
             "limits": "/dashboard/limits", "alerts": "/dashboard/alerts",
             "schedules": "/dashboard/schedules"}
    for name, path in pages.items():
        response = await page.goto(live_server.url(path))
        assert response is not None and response.status == 200, path
        await screenshot(page, f"dashboard-{name}")
    await page.emulate_media(color_scheme="dark")
    for name in ("overview", "job", "limits"):
        await page.goto(live_server.url(pages[name]))
        await screenshot(page, f"dashboard-{name}-dark")
    await page.set_viewport_size({"width": 375, "height": 740})
    for name in ("overview", "jobs", "dlq"):
        await page.goto(live_server.url(pages[name]))
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (name, width)  # wide tables scroll inside their own box
        await screenshot(page, f"dashboard-{name}-phone")
    await expect(page.get_by_text("fan@example.com")).to_have_count(0)
    # nothing refused by the CSP, no script errors; only the refused sign-in's 401
    assert [p for p in problems if "status of 401" not in p] == [], problems


async def test_counts_change_live_as_jobs_run(live_server: LiveServer, page: Page) -> None:
    from playwright.async_api import expect

    engine = live_server.engine
    gate = asyncio.Event()

    async def send(job: Job) -> dict[str, bool]:
        await gate.wait()
        return {"sent": True}

    engine.register("send-email", send)
    await sign_in(live_server, page)
    await expect(page.locator(".live.on")).to_have_count(1)  # the stream is open
    await expect(cell(page, "communication", "completed")).to_have_text("0")
    job = await engine.enqueue("send-email", EMAIL, tenant_id="t1", user_id="u1")
    await expect(cell(page, "communication", "active")).to_have_text("1", timeout=1500)
    gate.set()
    await engine.wait(job.id, timeout=5)
    await expect(cell(page, "communication", "completed")).to_have_text("1", timeout=1500)
    await expect(cell(page, "communication", "active")).to_have_text("0")
    await screenshot(page, "dashboard-overview-live")


async def test_retrying_a_dead_letter_job_sees_it_complete(live_server: LiveServer,
                                                          page: Page) -> None:
    from playwright.async_api import expect

    engine = live_server.engine

    failed = await dead_letter(engine)
    engine.register("send-push", lambda job: {"delivered": True})
    await sign_in(live_server, page)
    await page.goto(live_server.url("/dashboard/dlq"))
    await page.get_by_label(f"Select job {failed.id}").check()
    await screenshot(page, "dashboard-dlq-selected")
    await page.get_by_role("button", name="Retry selected").click()
    await expect(page.get_by_role("status")).to_have_text("Jobs put back to waiting: 1.")
    await page.goto(live_server.url(f"/dashboard/jobs/{failed.id}"))
    await expect(page.locator(".state")).to_have_text("completed")
    await expect(page.locator("ol.timeline")).to_contain_text("attempt 1 failed")
    await screenshot(page, "dashboard-job-retried")


async def test_an_emergency_stop_defers_jobs_until_resumed(live_server: LiveServer,
                                                           page: Page) -> None:
    from playwright.async_api import expect

    engine = live_server.engine
    engine.register("send-email", lambda job: {"sent": True})
    await sign_in(live_server, page)
    await page.goto(live_server.url("/dashboard/limits"))
    row = page.locator('tr[data-provider="sendgrid"]')
    await row.get_by_role("button", name="Stop…").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Emergency stop")
    await screenshot(page, "dashboard-confirm-stop")
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Emergency stop in force.")
    await expect(row.locator(".stopped")).to_have_text("STOPPED")

    job = await engine.enqueue("send-email", EMAIL, tenant_id="t1", user_id="u1")
    await page.goto(live_server.url("/dashboard"))
    await expect(cell(page, "communication", "waiting")).to_have_text("1")
    await asyncio.sleep(0.3)
    held = await engine.get(job.id)
    assert held is not None and (held.state.value, held.attempts) == ("waiting", 0)
    await page.goto(live_server.url(f"/dashboard/jobs/{job.id}"))
    await expect(page.locator(".state")).to_have_text("queued")

    await page.goto(live_server.url("/dashboard/limits"))
    await row.get_by_role("button", name="Resume…").click()
    await page.get_by_role("button", name="Resume", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Provider resumed.")
    assert (await engine.wait(job.id, timeout=5)).state.value == "completed"


async def test_monitoring_sees_no_action_and_a_forced_post_is_refused(
        live_server: LiveServer, page: Page) -> None:
    engine = live_server.engine

    failed = await dead_letter(engine)
    await sign_in(live_server, page, "monitoring")
    for path in ("/dashboard", "/dashboard/dlq", "/dashboard/limits", "/dashboard/alerts"):
        await page.goto(live_server.url(path))
        buttons = await page.get_by_role("button").all_inner_texts()
        assert buttons == ["Sign out"], (path, buttons)
        assert await page.locator('input[type="checkbox"]').count() == 0
    await screenshot(page, "dashboard-alerts-monitoring")
    csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
    forced = await page.request.post(live_server.url("/dashboard/dlq/retry"),
                                     form={"csrf": csrf or "", "job": failed.id})
    assert forced.status == 403 and (await forced.json())["code"] == "forbidden"
    assert (await engine.get(failed.id)).state.value == "failed"  # type: ignore[union-attr]


async def test_a_post_without_the_csrf_token_is_refused(live_server: LiveServer,
                                                        page: Page) -> None:
    await sign_in(live_server, page)
    refused = await page.request.post(live_server.url("/dashboard/queues/money/pause"),
                                      form={"queue": "money"})
    assert refused.status == 403 and (await refused.json())["code"] == "csrf_failed"
    assert not live_server.engine.is_paused("money")


async def test_the_dashboard_works_from_the_keyboard_alone(live_server: LiveServer,
                                                           page: Page) -> None:
    from playwright.async_api import expect

    await live_server.engine.resume("money")
    await page.goto(live_server.url("/dashboard/login"))
    await page.keyboard.type(live_server.token())  # the token field has the focus
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(live_server.url("/dashboard"))

    # Tab walks the skip link, the navigation, sign-out and each queue's button, each with a
    # visible focus ring.
    reached: list[str] = []
    for _ in range(30):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return [e.tagName + ':' + e.textContent.trim(), s.outlineStyle, s.outlineWidth]; }")
        if focused[0].startswith("BODY:"):
            break  # past the last control
        reached.append(focused[0])
        assert focused[1] != "none" and focused[2] != "0px", focused
    for wanted in ("A:Skip to content", "A:Overview", "A:Jobs", "A:Dead letters", "A:Limits",
                   "A:Alerts", "A:Schedules", "BUTTON:Sign out", "BUTTON:Pause"):
        assert wanted in reached, (wanted, reached)

    # and Enter on the money queue's button pauses it
    button = page.locator('tr[data-queue="money"] button', has_text="Pause")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(cell(page, "money", "paused")).to_have_text("yes")
    assert live_server.engine.is_paused("money")
    await screenshot(page, "dashboard-keyboard")
