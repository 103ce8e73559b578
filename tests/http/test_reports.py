"""GET /api/v1/queue/reports and /reports/{id}: listing and downloading generated reports,
within the caller's scope."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from httpkit import JOBS, Api, auth

from tickq.storage.base import Report

REPORTS = "/api/v1/queue/reports"
T0 = 1_741_608_000.0  # 2025-03-10T12:00:00Z


async def put(api: Api, report_id: str, *, tenant: str = "t1", user: str | None = "u1",
              venue: str | None = None, created_at: float = T0, fmt: str = "csv",
              content: bytes = b"eventType,count\r\npage_view,3\r\n") -> Report:
    report = Report(id=report_id, tenant_id=tenant, user_id=user, venue_id=venue,
                    report_type="analytics", format=fmt, period_start=T0 - 12 * 3600,
                    period_end=T0 + 12 * 3600, created_at=created_at,
                    content_type="text/csv; charset=utf-8" if fmt == "csv"
                    else "application/json", size=len(content), job_id=report_id,
                    content=content)
    await api.engine.store.report_put(report)
    return report


async def listed(api: Api, query: str = "", **who: Any) -> list[str]:
    resp = await api.client.get(f"{REPORTS}{query}", headers=auth(**who))
    assert resp.status == 200, await resp.text()
    return [r["id"] for r in (await resp.json())["reports"]]


async def test_a_generated_report_downloads_as_an_attachment(api: Api) -> None:
    body = {"queue": "background", "type": "generate-report",
            "data": {"reportType": "jobs", "format": "csv", "startDate": "2025-03-01",
                     "endDate": "2025-03-31"}}
    job_id = await api.enqueue(body, role="service")
    # Completed background jobs are not kept: wait for the end before the job can run.
    done = asyncio.create_task(api.engine.wait(job_id, timeout=5))
    await asyncio.sleep(0)
    await api.engine.resume("background")
    result = (await done).result
    # The report's id is the job's: its address is known from the enqueue answer alone.
    assert result["downloadUrl"] == f"{REPORTS}/{job_id}"
    assert await api.engine.get(job_id) is None

    resp = await api.client.get(result["downloadUrl"], headers=auth("monitoring"))

    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == (
        f'attachment; filename="jobs-20250301-20250331-{job_id[:8]}.csv"')
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert await resp.read() == b"type,state,failureCode,failureReason,count\r\n"
    assert int(resp.headers["Content-Length"]) == result["size"]


async def test_a_json_report_downloads_as_json(api: Api) -> None:
    content = orjson.dumps({"rows": [{"eventType": "page_view", "count": 3}]})
    await put(api, "r-json", fmt="json", content=content)

    resp = await api.client.get(f"{REPORTS}/r-json", headers=auth("service"))

    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="analytics-20250310-20250310-r-json.json"')
    assert await resp.json() == {"rows": [{"eventType": "page_view", "count": 3}]}


async def test_list_shows_the_callers_tenant_newest_first(api: Api) -> None:
    made = await put(api, "r1", created_at=T0)
    await put(api, "r2", created_at=T0 + 60)
    await put(api, "r3", tenant="t2")

    assert await listed(api, role="monitoring") == ["r2", "r1"]
    assert await listed(api, "?limit=1", role="service") == ["r2"]
    assert await listed(api) == ["r2", "r1"]  # admins too list their own tenant by default
    assert await listed(api, "?tenant=t2") == ["r3"]
    assert await listed(api, "?tenant=t1", role="monitoring") == ["r2", "r1"]

    resp = await api.client.get(REPORTS, headers=auth("monitoring"))
    page = await resp.json()
    assert (page["count"], page["limit"], page["tenant"]) == (2, 20, "t1")
    assert page["reports"][1] == {
        "id": "r1", "reportType": "analytics", "format": "csv", "tenantId": "t1",
        "venueId": None, "userId": "u1", "periodStart": "2025-03-10T00:00:00.000Z",
        "periodEnd": "2025-03-11T00:00:00.000Z", "createdAt": "2025-03-10T12:00:00.000Z",
        "contentType": "text/csv; charset=utf-8", "size": made.size, "jobId": "r1",
        "downloadUrl": f"{REPORTS}/r1"}


async def test_another_tenants_report_is_not_found(api: Api) -> None:
    await put(api, "theirs", tenant="t2")

    for role in ("service", "monitoring", "venue_admin", "user"):
        resp = await api.client.get(f"{REPORTS}/theirs", headers=auth(role))
        assert resp.status == 404, role
        assert (await resp.json())["code"] == "report_not_found"
    resp = await api.client.get(f"{REPORTS}/theirs", headers=auth("admin"))
    assert resp.status == 200
    resp = await api.client.get(f"{REPORTS}/no-such-report", headers=auth("admin"))
    assert resp.status == 404
    resp = await api.client.get(f"{REPORTS}/{'x' * 100}", headers=auth("admin"))
    assert resp.status == 404


async def test_users_and_venue_admins_read_only_their_own_reports(api: Api) -> None:
    await put(api, "mine", user="u1")
    await put(api, "venue-1", user="u2", venue="v1", created_at=T0 + 1)
    await put(api, "venue-2", user="u3", venue="v2", created_at=T0 + 2)
    await put(api, "tenant-wide", user="u4", created_at=T0 + 3)

    assert await listed(api, role="user", user="u1") == ["mine"]
    assert await listed(api, role="venue_admin", user="u9", venues=["v1"]) == ["venue-1"]
    assert await listed(api, role="venue_admin", user="u1", venues=["v2"]) == [
        "venue-2", "mine"]
    assert await listed(api, role="service") == ["tenant-wide", "venue-2", "venue-1", "mine"]
    resp = await api.client.get(f"{REPORTS}/venue-1", headers=auth("user", user="u1"))
    assert resp.status == 404
    resp = await api.client.get(f"{REPORTS}/tenant-wide",
                                headers=auth("venue_admin", venues=["v1"]))
    assert resp.status == 404
    resp = await api.client.get(f"{REPORTS}/venue-1",
                                headers=auth("venue_admin", user="u9", venues=["v1"]))
    assert resp.status == 200


async def test_reports_need_a_token_and_only_admins_list_other_tenants(api: Api) -> None:
    await put(api, "r1")
    for path in (REPORTS, f"{REPORTS}/r1"):
        resp = await api.client.get(path)
        assert resp.status == 401, path
        assert (await resp.json())["code"] == "missing_token"
    resp = await api.client.get(f"{REPORTS}?tenant=t2", headers=auth("service"))
    assert resp.status == 403
    resp = await api.client.get(f"{REPORTS}?limit=0", headers=auth("service"))
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == "limit"
    resp = await api.client.get(f"{REPORTS}?color=red", headers=auth("service"))
    assert resp.status == 400


async def test_a_report_of_an_unsupported_format_is_never_stored(api: Api) -> None:
    body = {"queue": "background", "type": "generate-report",
            "data": {"reportType": "jobs", "format": "pdf", "startDate": "2025-03-01",
                     "endDate": "2025-03-31"}}
    job_id = await api.enqueue(body)
    await api.engine.resume("background")
    job = await api.wait_state(job_id, "failed")
    assert job.errors[-1].code == "unsupported_format"
    assert await listed(api) == []
    resp = await api.client.get(f"{JOBS}/{job_id}", headers=auth())
    assert (await resp.json())["failedReason"] == (
        "format 'pdf' is not supported: reports are generated as csv or json")
