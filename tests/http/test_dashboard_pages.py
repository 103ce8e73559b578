"""Dashboard pages: real values, tenant scoping, masking, and what each role is offered."""

from __future__ import annotations

import re

from dashkit import DASH, post, sign_in
from httpkit import Api, auth, email, payment

from tickq.storage.base import NewAlert

#: any form that acts (sign-out is the one form every signed-in page has)
_ACTION_FORM = re.compile(r'<form method="post" action="/dashboard/(?!logout)')


async def test_the_overview_shows_each_queues_counts_and_charts(api: Api) -> None:
    await api.enqueue(payment(amount=1000))
    await api.enqueue(payment(amount=2000))
    done = await api.enqueue(email())
    await api.wait_state(done, "completed")
    await sign_in(api)
    text = await (await api.client.get(DASH)).text()
    money = text.split('<tr data-queue="money">')[1].split("</tr>")[0]
    assert '<td data-count="waiting">2</td>' in money
    assert '<td data-count="paused">yes</td>' in money
    comm = text.split('<tr data-queue="communication">')[1].split("</tr>")[0]
    assert '<td data-count="completed">1</td>' in comm
    assert 'data-chart="throughput"' in text and 'data-chart="failure"' in text
    assert text.count("<polyline") == 4  # one per queue, and the failure rate
    assert 'action="/dashboard/queues/money/resume"' in text


async def test_the_job_list_filters_searches_and_pages(api: Api) -> None:
    ids = [await api.enqueue(payment(amount=100 + i)) for i in range(3)]
    mail = await api.enqueue(email())
    await sign_in(api)
    text = await (await api.client.get(f"{DASH}/jobs?queue=money&state=waiting")).text()
    assert all(i in text for i in ids) and mail not in text
    found = await (await api.client.get(f"{DASH}/jobs?q={mail}")).text()
    assert mail in found and ids[0] not in found
    job = await api.engine.get(ids[1])
    assert job is not None and job.idempotency_key is not None
    key = job.idempotency_key
    by_key = await (await api.client.get(f"{DASH}/jobs", params={"q": key})).text()
    assert ids[1] in by_key and ids[0] not in by_key
    bad = await api.client.get(f"{DASH}/jobs?queue=nope")
    assert bad.status == 400 and "nope" in await bad.text()


async def test_the_job_list_pages_on_with_a_cursor(api: Api) -> None:
    from tickq.http.dashboard import pages

    pages.PAGE_SIZE, old = 2, pages.PAGE_SIZE
    try:
        ids = [await api.enqueue(payment(amount=100 + i)) for i in range(3)]
        await sign_in(api)
        first = await (await api.client.get(f"{DASH}/jobs?queue=money")).text()
        assert ids[2] in first and ids[1] in first and ids[0] not in first
        link = re.search(r'href="(/dashboard/jobs\?[^"]+)">Next page', first)
        assert link is not None
        second = await (await api.client.get(link.group(1).replace("&amp;", "&"))).text()
        assert ids[0] in second and ids[2] not in second
    finally:
        pages.PAGE_SIZE = old


async def test_a_tenant_sees_only_its_own_jobs(api: Api) -> None:
    mine = await api.enqueue(payment(), role="venue_admin", tenant="t1")
    theirs = await api.enqueue(payment(), role="venue_admin", tenant="t2")
    await sign_in(api, "venue_admin", tenant="t1")
    listing = await (await api.client.get(f"{DASH}/jobs")).text()
    assert mine in listing and theirs not in listing
    assert (await api.client.get(f"{DASH}/jobs/{mine}")).status == 200
    other = await api.client.get(f"{DASH}/jobs/{theirs}")
    assert other.status == 404 and (await other.json())["code"] == "job_not_found"
    search = await (await api.client.get(f"{DASH}/jobs?q={theirs}")).text()
    assert f'href="/dashboard/jobs/{theirs}"' not in search and "No jobs match." in search
    refused = await api.client.get(f"{DASH}/jobs?tenant=t2")
    assert refused.status == 403


async def test_job_detail_masks_personal_data_and_shows_the_error_history(api: Api) -> None:
    push = await api.enqueue({"queue": "communication", "type": "send-push",
                              "data": {"userId": "u1", "title": "Call +44 20 7946 0958",
                                       "body": "mail fan@example.com"}})
    await api.wait_state(push, "failed")
    await sign_in(api)
    resp = await api.client.get(f"{DASH}/jobs/{push}")
    text = await resp.text()
    assert resp.status == 200
    assert "fan@example.com" not in text and "[email]" in text
    assert "7946" not in text and "[phone]" in text
    assert "push provider refused the device token" in text
    assert "attempt 1 failed: PermanentError" in text
    assert "enqueued on communication" in text and "failed</li>" in text


async def test_the_timeline_shows_an_operators_retry_without_naming_the_operator(
        api: Api) -> None:
    push = await api.enqueue({"queue": "communication", "type": "send-push",
                              "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(push, "failed")
    resp = await api.client.post("/api/v1/queue/dlq/retry", json={"jobIds": [push]},
                                 headers=auth("admin", "t9", "ops-anna"))
    assert resp.status == 200, await resp.text()
    await api.wait_state(push, "failed")  # still no push provider: back to the DLQ
    await sign_in(api, "user", "t1", "u1")  # the job's own user
    text = await (await api.client.get(f"{DASH}/jobs/{push}")).text()
    steps = re.findall(r"<li>.*?</li>", text.split('class="timeline"')[1], re.S)
    labels = [re.sub(r"<[^>]+>|\s+", " ", step).strip() for step in steps]
    retried = [i for i, label in enumerate(labels)
               if "put back to waiting by an operator (admin)" in label]
    failures = [i for i, label in enumerate(labels) if "attempt" in label and "failed" in label]
    assert len(retried) == 1 and len(failures) == 2
    assert failures[0] < retried[0] < failures[1]  # in the order it happened
    assert "ops-anna" not in text


async def test_each_page_renders_real_values(api: Api) -> None:
    failed = await api.enqueue({"queue": "communication", "type": "send-push",
                                "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(failed, "failed")
    alert = await api.engine.store.alert_insert(NewAlert(
        severity="critical", alert_type="queue_depth", message="Money queue has 75 waiting",
        queue_name="money", metric_value=75.0, threshold_value=50.0,
        created_at=api.engine.clock.now()))
    csrf = await sign_in(api)
    made = await api.client.post("/api/v1/queue/schedules", json={
        "name": "digest", "cron": "0 9 * * *",
        "job": {"queue": "communication", "type": "send-email",
                "data": {"to": "ops@example.com", "template": "digest"}}},
        headers=auth())
    assert made.status == 201
    dlq = await (await api.client.get(f"{DASH}/dlq")).text()
    assert failed in dlq and 'name="job"' in dlq and csrf in dlq
    limits = await (await api.client.get(f"{DASH}/limits")).text()
    assert 'data-provider="stripe"' in limits and "closed" in limits
    alerts = await (await api.client.get(f"{DASH}/alerts")).text()
    assert "Money queue has 75 waiting" in alerts
    assert f'action="/dashboard/alerts/{alert.id}/acknowledge"' in alerts
    schedules = await (await api.client.get(f"{DASH}/schedules")).text()
    assert "digest" in schedules and "0 9 * * *" in schedules
    assert 'action="/dashboard/schedules/digest/run"' in schedules


async def test_monitoring_sees_every_page_but_no_action_and_a_forced_post_is_403(
        api: Api) -> None:
    failed = await api.enqueue({"queue": "communication", "type": "send-push",
                                "data": {"userId": "u1", "title": "t", "body": "b"}})
    await api.wait_state(failed, "failed")
    csrf = await sign_in(api, "monitoring")
    for path in ("", "/jobs", "/dlq", "/limits", "/alerts", f"/jobs/{failed}"):
        resp = await api.client.get(f"{DASH}{path}")
        assert resp.status == 200, path
        text = await resp.text()
        assert not _ACTION_FORM.search(text), path
        assert 'type="checkbox"' not in text
    assert (await api.client.get(f"{DASH}/schedules")).status == 403  # admins only, as the API
    for path, fields in (("/dlq/retry", {"job": failed}), ("/dlq/discard", {"job": failed}),
                         ("/dlq/discard/confirm", {"job": failed}),
                         ("/queues/money/resume", {}), ("/limits/stop", {}),
                         ("/limits/stop/confirm", {}), ("/limits/stripe/reset", {}),
                         ("/alerts/1/acknowledge", {}), ("/schedules/x/run", {}),
                         ("/schedules/x/pause", {}), ("/schedules/x/resume", {})):
        resp = await post(api, path, csrf, **fields)
        body = await resp.json()
        assert resp.status == 403 and body["code"] == "forbidden", (path, body)
    assert (await api.engine.get(failed)).state.value == "failed"  # type: ignore[union-attr]
    assert api.engine.is_paused("money")
