"""Generated reports under /api/v1/queue/reports (made by `generate-report` jobs).

    GET /reports        the caller's tenant's reports, newest first (any role)     200
    GET /reports/{id}   download one as an attachment (any role, within its scope)  200

Any authenticated role may read, as with jobs. Which reports a caller may see follows the job
that made each one (`access.can_see`), one step stricter for venue admins: a report sums data
across whatever it covers, so a venue_admin reads the reports of their own venues and the ones
they asked for themselves, not tenant-wide ones other people made. A `user` reads only the
reports they asked for. Admins read any tenant's (`?tenant=` lists another's). A report outside
the caller's scope answers 404 exactly like one that does not exist.

A report's id is the id of the job that made it, so the `jobId` of the enqueue answer is all a
caller needs to download it: background jobs are not kept once they complete, and the job's own
result (which also names `downloadUrl`) may be gone by the time the caller asks.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tickq.clock import iso
from tickq.errors import NotFoundError, PermissionDeniedError
from tickq.http.access import principal
from tickq.http.auth import Principal
from tickq.http.body import parse
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schemas import DEFAULT_LIMIT, MAX_ID_CHARS, MAX_LIMIT, query_values
from tickq.storage.base import ReportInfo

PREFIX = "/api/v1/queue/reports"
routes = web.RouteTableDef()

#: a user's or venue admin's listing reads this many of the tenant's newest reports and shows
#: the ones in their scope
SCOPED_SCAN = 1_000
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


class ReportListQuery(BaseModel):
    """GET /api/v1/queue/reports query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: admins only: another tenant's reports (everyone else always lists their own tenant)
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


def can_read(caller: Principal, report: ReportInfo) -> bool:
    if caller.is_admin:
        return True
    if report.tenant_id != caller.tenant_id:
        return False
    own = report.user_id is not None and report.user_id == caller.user_id
    if caller.role == "user":
        return own
    if caller.role == "venue_admin":
        return own or (report.venue_id is not None and report.venue_id in caller.venues)
    return True


def report_view(report: ReportInfo) -> dict[str, Any]:
    return {"id": report.id, "reportType": report.report_type, "format": report.format,
            "tenantId": report.tenant_id, "venueId": report.venue_id, "userId": report.user_id,
            "periodStart": iso(report.period_start), "periodEnd": iso(report.period_end),
            "createdAt": iso(report.created_at), "contentType": report.content_type,
            "size": report.size, "jobId": report.job_id,
            "downloadUrl": f"{PREFIX}/{report.id}"}


def filename_of(report: ReportInfo) -> str:
    """`jobs-20250101-20250131-0193a2b4.csv`: type, first and last day, the id's start."""
    first = time.strftime("%Y%m%d", time.gmtime(report.period_start))
    last = time.strftime("%Y%m%d", time.gmtime(max(report.period_start,
                                                   report.period_end - 0.001)))
    name = f"{report.report_type}-{first}-{last}-{report.id[:8]}.{report.format}"
    return _UNSAFE_FILENAME.sub("_", name)


@routes.get(PREFIX)
async def list_reports(request: web.Request) -> web.Response:
    caller, engine = principal(request), request.app[ENGINE]
    q = parse(ReportListQuery, query_values(request.query), what="the query string",
              strict=False)
    tenant = caller.tenant_id if q.tenant is None else q.tenant
    if tenant != caller.tenant_id and not caller.is_admin:
        raise PermissionDeniedError("only admins may list another tenant's reports")
    if caller.scoped:
        found = await engine.store.report_list(tenant, SCOPED_SCAN)
        reports = [r for r in found if can_read(caller, r)][: q.limit]
    else:
        reports = await engine.store.report_list(tenant, q.limit)
    return json_response({"reports": [report_view(r) for r in reports], "count": len(reports),
                          "limit": q.limit, "tenant": tenant})


@routes.get(f"{PREFIX}/{{id}}")
async def download_report(request: web.Request) -> web.Response:
    caller, engine = principal(request), request.app[ENGINE]
    report_id = request.match_info["id"]
    report = (await engine.store.report_get(report_id)
              if len(report_id) <= MAX_ID_CHARS else None)
    if report is None or not can_read(caller, report):
        raise NotFoundError(f"report {report_id[:MAX_ID_CHARS]} not found",
                            code="report_not_found")
    return web.Response(body=report.content, headers={
        "Content-Type": report.content_type,
        "Content-Disposition": f'attachment; filename="{filename_of(report)}"',
        "Cache-Control": "no-store"})
