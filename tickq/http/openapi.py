"""The API's own description: an OpenAPI 3.1 document and a plain HTML page listing it.

    GET /api/v1/queue/openapi.json   the document (public)                              200
    GET /api/v1/queue/docs           every operation on one server-rendered page (public) 200

What each route takes and answers is written once, in `OPERATIONS`, next to nothing else; the
document is generated from the routes the application actually registered, the roles their
`@require` admits and the pydantic models the handlers parse with. A route added without an
entry here (or an entry whose route was removed) fails a test instead of drifting silently.

The docs page has no script at all and pulls nothing from a CDN: the service is often run where
there is no internet, and a page served next to admin endpoints should not be able to execute
anything. Its one stylesheet is inline and allowed by hash in a strict CSP.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web

from tickq import __version__
from tickq.http.access import roles_of
from tickq.http.alerts import AlertListQuery, AlertTest
from tickq.http.maintenance import MaintenanceQuery
from tickq.http.metrics_json import FailuresQuery, ThroughputQuery
from tickq.http.reports import ReportListQuery
from tickq.http.responses import json_response
from tickq.http.schedules import NewSchedule, ScheduledJob
from tickq.http.schemas import (
    ClearQuery,
    DlqQuery,
    DlqRetry,
    ListQuery,
    NewBatch,
    NewJob,
    QueueJobsQuery,
    RetryRequest,
    ServiceBody,
)

PREFIX = "/api/v1/queue"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
DOCS_PATH = f"{PREFIX}/docs"
routes = web.RouteTableDef()

Model = type[pydantic.BaseModel]

#: standard descriptions of the error statuses routes document
ERRORS: dict[int, str] = {
    400: "The request is invalid (body, query string or a field of either)",
    401: "No bearer token, or one that is invalid or expired",
    403: "The caller's role or scope does not allow this",
    404: "Nothing by that name or id (or nothing the caller may see)",
    409: "The request conflicts with the current state",
    413: "The request body is too large",
    415: "The request body is not JSON",
    429: "Too many requests; retry after the time in Retry-After",
    503: "The service or its store is not available",
}
#: every route that reads a JSON body may answer these for the body alone
BODY_ERRORS = (400, 413, 415)


@dataclass(frozen=True)
class Operation:
    """What one route is documented as: a summary, the models the handler parses its body and
    query string with, and its responses (success codes with a description; error codes share
    the one error body)."""

    summary: str
    ok: dict[int, str]
    errors: tuple[int, ...] = ()
    body: Model | None = None
    #: whether a request without a body is accepted (the model's defaults apply)
    body_optional: bool = False
    query: Model | None = None
    #: query parameters read outside a model, name -> description
    query_params: dict[str, str] = field(default_factory=dict)
    #: an array rather than an object on success
    array: bool = False
    public: bool = False


_QUEUE_PARAM = {"queue": "when given, the job must be in this queue"}

#: (method, path) -> how the route is documented; the single list of the API's operations
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", f"{PREFIX}/health"): Operation(
        "Health of the service and its store", {200: "Healthy"}, (503,), public=True),
    ("GET", f"{PREFIX}/health/ready"): Operation(
        "Readiness", {200: "Ready"}, (503,), public=True),
    ("GET", OPENAPI_PATH): Operation("This OpenAPI document", {200: "The document"},
                                     public=True),
    ("GET", DOCS_PATH): Operation("The operations as an HTML page", {200: "The page"},
                                  public=True),
    ("POST", f"{PREFIX}/jobs"): Operation(
        "Enqueue one job", {201: "Enqueued", 200: "A job with this idempotency key exists"},
        (*BODY_ERRORS, 403, 409), body=NewJob),
    ("POST", f"{PREFIX}/jobs/batch"): Operation(
        "Enqueue 1-100 jobs of one queue",
        {201: "At least one job was enqueued", 200: "No new job (all duplicates or invalid)"},
        (*BODY_ERRORS, 403), body=NewBatch),
    ("GET", f"{PREFIX}/jobs"): Operation(
        "List jobs, newest first (cursor-paginated)", {200: "A page of jobs"}, (400, 403),
        query=ListQuery),
    ("GET", f"{PREFIX}/jobs/{{id}}"): Operation(
        "One job", {200: "The job"}, (404,), query_params=_QUEUE_PARAM),
    ("POST", f"{PREFIX}/jobs/{{id}}/retry"): Operation(
        "Retry a dead-letter job", {200: "The job is waiting again"},
        (*BODY_ERRORS, 403, 404, 409), body=RetryRequest, body_optional=True),
    ("DELETE", f"{PREFIX}/jobs/{{id}}"): Operation(
        "Cancel a job", {200: "Cancelled", 202: "Running; asked to stop"}, (403, 404, 409),
        query_params=_QUEUE_PARAM),
    ("GET", f"{PREFIX}/queues"): Operation(
        "Every queue with its counts", {200: "The queues"}, array=True),
    ("GET", f"{PREFIX}/queues/{{name}}/status"): Operation(
        "A queue's counts and sample jobs", {200: "The queue"}, (404,)),
    ("POST", f"{PREFIX}/queues/{{name}}/pause"): Operation(
        "Pause a queue", {200: "Paused"}, (403, 404)),
    ("POST", f"{PREFIX}/queues/{{name}}/resume"): Operation(
        "Resume a queue", {200: "Resumed"}, (403, 404)),
    ("POST", f"{PREFIX}/queues/{{name}}/clear"): Operation(
        "Cancel a queue's jobs that have not started", {200: "Cleared"}, (400, 403, 404),
        query=ClearQuery),
    ("GET", f"{PREFIX}/queues/{{name}}/jobs"): Operation(
        "A queue's jobs in one status (offset-paginated)", {200: "A page of jobs"},
        (400, 404), query=QueueJobsQuery),
    ("GET", f"{PREFIX}/dlq"): Operation(
        "Dead-letter jobs with their error history", {200: "A page of failed jobs"},
        (400, 404), query=DlqQuery),
    ("POST", f"{PREFIX}/dlq/retry"): Operation(
        "Retry 1-100 dead-letter jobs", {200: "One result per job"}, (*BODY_ERRORS, 403),
        body=DlqRetry),
    ("DELETE", f"{PREFIX}/dlq/{{id}}"): Operation(
        "Discard one dead-letter job for good", {200: "Discarded"}, (403, 404, 409)),
    ("GET", f"{PREFIX}/metrics/prometheus"): Operation(
        "Prometheus metrics in the text exposition format", {200: "The metrics"}, (403,)),
    ("GET", f"{PREFIX}/metrics/summary"): Operation(
        "Queue averages and alerts by severity over the last hour", {200: "The summary"},
        (403,)),
    ("GET", f"{PREFIX}/metrics/throughput"): Operation(
        "Completed jobs per queue and minute, newest first", {200: "Throughput by minute"},
        (400, 403), query=ThroughputQuery),
    ("GET", f"{PREFIX}/metrics/failures"): Operation(
        "Failure trends per hour and the most frequent failures by type and error code",
        {200: "The analysis"}, (400, 403), query=FailuresQuery),
    ("GET", f"{PREFIX}/rate-limits/status"): Operation(
        "Every provider rate-limit bucket", {200: "Buckets by name"}),
    ("GET", f"{PREFIX}/rate-limits/status/{{key}}"): Operation(
        "One provider's bucket", {200: "The bucket"}, (404,)),
    ("GET", f"{PREFIX}/rate-limits/check/{{service}}"): Operation(
        "Whether a call to a provider may go out now", {200: "The answer"}, (404,)),
    ("POST", f"{PREFIX}/rate-limits/reset/{{service}}"): Operation(
        "Reset a provider's limiter and breaker", {200: "Reset"}, (403, 404)),
    ("POST", f"{PREFIX}/rate-limits/emergency-stop"): Operation(
        "Stop calls to one provider, or to all", {200: "Stopped"}, (*BODY_ERRORS, 403, 404),
        body=ServiceBody, body_optional=True),
    ("POST", f"{PREFIX}/rate-limits/resume"): Operation(
        "Lift an emergency stop", {200: "Resumed"}, (*BODY_ERRORS, 403, 404),
        body=ServiceBody, body_optional=True),
    ("GET", f"{PREFIX}/audit"): Operation(
        "Recent operator actions, newest first", {200: "Audit entries"}, (400, 403),
        query_params={"limit": "1 to 1000 entries (default 50)",
                      "action": "only entries of this action"}),
    ("GET", f"{PREFIX}/breakers"): Operation(
        "Every provider's circuit breaker", {200: "Breakers by name"}),
    ("POST", f"{PREFIX}/webhooks/stripe"): Operation(
        "A Stripe event, authenticated by its Stripe-Signature (not a token)",
        {200: "Recorded, a duplicate, or about no job of ours"}, (400, 409, 413, 503),
        public=True),
    ("GET", f"{PREFIX}/reports"): Operation(
        "Generated reports of the caller's tenant, newest first", {200: "The reports"},
        (400, 403), query=ReportListQuery),
    ("GET", f"{PREFIX}/alerts"): Operation(
        "Recent alerts, newest first (default: the last 24 hours)", {200: "The alerts"},
        (400, 403), query=AlertListQuery),
    ("POST", f"{PREFIX}/alerts/{{id}}/acknowledge"): Operation(
        "Acknowledge an alert (who and when are recorded)", {200: "Acknowledged"},
        (403, 404)),
    ("POST", f"{PREFIX}/alerts/test"): Operation(
        "Raise a test alert through every channel (or one) and report each",
        {200: "The alert and each channel's outcome"}, (*BODY_ERRORS, 403), body=AlertTest,
        body_optional=True),
    ("GET", f"{PREFIX}/reports/{{id}}"): Operation(
        "Download a generated report (CSV or JSON) as an attachment", {200: "The report"},
        (404,)),
    ("POST", f"{PREFIX}/schedules"): Operation(
        "Make a cron schedule: a job template enqueued at every slot, once per slot",
        {201: "The schedule, with its next slot"}, (*BODY_ERRORS, 403, 409), body=NewSchedule),
    ("GET", f"{PREFIX}/schedules"): Operation(
        "Every cron schedule with its next slot", {200: "The schedules"}, (403,)),
    ("GET", f"{PREFIX}/schedules/{{name}}"): Operation(
        "One cron schedule", {200: "The schedule"}, (403, 404)),
    ("DELETE", f"{PREFIX}/schedules/{{name}}"): Operation(
        "Remove a cron schedule (jobs it enqueued stay)", {200: "Deleted"}, (403, 404)),
    ("POST", f"{PREFIX}/schedules/{{name}}/pause"): Operation(
        "Pause a cron schedule: no slot is enqueued until it is resumed",
        {200: "The schedule, paused"}, (403, 404)),
    ("POST", f"{PREFIX}/schedules/{{name}}/resume"): Operation(
        "Resume a cron schedule from its next slot (slots that fell while paused are dropped)",
        {200: "The schedule, resumed"}, (403, 404)),
    ("POST", f"{PREFIX}/schedules/{{name}}/run"): Operation(
        "Enqueue a cron schedule's job once, now, outside its slots",
        {201: "Enqueued", 200: "Already enqueued by the same request this second"},
        (403, 404)),
    ("POST", f"{PREFIX}/jobs/schedule"): Operation(
        "Enqueue one job to start at a given time (runAt)",
        {201: "Enqueued", 200: "A job with this idempotency key exists"},
        (*BODY_ERRORS, 403, 409), body=ScheduledJob),
    ("GET", f"{PREFIX}/maintenance"): Operation(
        "Maintenance tasks and their latest runs, with what each removed",
        {200: "Tasks and runs"}, (400, 403), query=MaintenanceQuery),
    ("GET", f"{PREFIX}/cache/stats"): Operation(
        "Sizes of the in-process caches", {200: "Cache sizes"}, (403,)),
    ("POST", f"{PREFIX}/cache/flush"): Operation(
        "Forget every verified token (after rotating a key)", {200: "What was flushed"},
        (403,)),
}

_PATH_PARAM = re.compile(r"\{(\w+)\}")
_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "code", "message", "requestId"],
    "properties": {
        "error": {"type": "string", "description": "the HTTP status's title"},
        "code": {"type": "string", "description": "what a program branches on"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {
            "type": "object", "required": ["field", "message", "code"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                           "code": {"type": "string"}}}},
        "requestId": {"type": ["string", "null"]},
    },
}


def api_routes(app: web.Application) -> dict[tuple[str, str], frozenset[str] | None]:
    """Every (method, path) the application serves under /api/v1/queue, with the roles its
    handler admits (None: any authenticated caller, or public). HEAD is implied by GET."""
    found: dict[tuple[str, str], frozenset[str] | None] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        if path == PREFIX or path.startswith(f"{PREFIX}/"):
            found[(route.method, path)] = roles_of(route.handler)
    return found


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes `app` serves (see `api_routes`)."""
    served = api_routes(app)
    return _document(tuple(sorted((m, p, tuple(sorted(r)) if r is not None else None)
                                  for (m, p), r in served.items())))


@functools.lru_cache(maxsize=4)
def _document(served: tuple[tuple[str, str, tuple[str, ...] | None], ...]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, roles in served:
        op = OPERATIONS.get((method, path)) or Operation("(undocumented)", {200: "OK"})
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, roles,
                                                                 components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "tickq job queue API", "version": __version__,
                 "description": "Durable jobs with priorities, retries, provider rate limits "
                                "and a dead-letter queue. Every operation but the public ones "
                                "needs a bearer JWT; `x-roles` lists the roles it admits."},
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
            "schemas": dict(sorted(components.items())),
        },
    }


def _operation(method: str, path: str, op: Operation, roles: tuple[str, ...] | None,
               components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _operation_id(method, path), "summary": op.summary,
        "tags": [path.removeprefix(f"{PREFIX}/").split("/")[0]],
    }
    if op.public:
        out["security"] = []
    else:
        out["x-roles"] = list(roles) if roles is not None else ["any"]
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1}} for name in _PATH_PARAM.findall(path)]
    if op.query is not None:
        schema = _register(op.query, components)
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                     "schema": prop}
            if prop.get("type") == "array" or "array" in str(prop.get("anyOf", "")):
                param.update(style="form", explode=True)
            params.append(param)
    for name, description in op.query_params.items():
        params.append({"name": name, "in": "query", "required": False,
                       "description": description,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 64}})
    if params:
        out["parameters"] = params
    if op.body is not None:
        _register(op.body, components)
        out["requestBody"] = {"required": not op.body_optional, "content": {
            "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}}}
    responses: dict[str, Any] = {}
    for status, description in sorted(op.ok.items()):
        responses[str(status)] = {"description": description,
                                  "content": {_ok_type(path): {"schema": _ok_schema(op, path)}}}
    errors = set(op.errors) | ({401} if not op.public else set()) | {429}
    for status in sorted(errors):
        responses[str(status)] = {"description": ERRORS[status], "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="Error")}}}}
    out["responses"] = responses
    return out


def _register(model: Model, components: dict[str, Any]) -> dict[str, Any]:
    """Add `model` (and the models it uses) to the components; return its schema."""
    schema = model.model_json_schema(ref_template=_REF)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return schema


#: routes answering something other than JSON, by the media type they answer
TEXT_TYPES = {DOCS_PATH: "text/html", f"{PREFIX}/metrics/prometheus": "text/plain"}


def _ok_type(path: str) -> str:
    return TEXT_TYPES.get(path, "application/json")


def _ok_schema(op: Operation, path: str) -> dict[str, Any]:
    if path in TEXT_TYPES:
        return {"type": "string"}
    return {"type": "array"} if op.array else {"type": "object"}


def _operation_id(method: str, path: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", path.removeprefix(PREFIX))
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words if w)


# --- the routes -----------------------------------------------------------------------------


@routes.get(OPENAPI_PATH)
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(build_document(request.app))


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
          "padding:0 1rem}table{border-collapse:collapse;width:100%}"
          "td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd}"
          "code{font-size:.95em}.m{font-weight:bold}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
#: no script may run at all; the inline stylesheet is allowed by its hash only
DOCS_CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; script-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def render_docs(document: dict[str, Any]) -> str:
    """The document's operations as one HTML table; every value is escaped."""
    rows = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            who = "public" if op.get("security") == [] else ", ".join(op.get("x-roles", []))
            codes = " ".join(op["responses"])
            rows.append(f"<tr><td class=\"m\">{html.escape(method.upper())}</td>"
                        f"<td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{html.escape(who)}</td>"
                        f"<td>{html.escape(codes)}</td></tr>")
    title = html.escape(f"{document['info']['title']} {document['info']['version']}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1><p>Machine-readable: <a href=\"{OPENAPI_PATH}\">"
            f"{OPENAPI_PATH}</a>. Send <code>Authorization: Bearer &lt;JWT&gt;</code> to every "
            f"operation but the public ones.</p><table><thead><tr><th>Method</th><th>Path</th>"
            f"<th>Summary</th><th>Roles</th><th>Responses</th></tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table></body></html>")


@routes.get(DOCS_PATH)
async def docs(request: web.Request) -> web.Response:
    page = render_docs(build_document(request.app))
    return web.Response(text=page, content_type="text/html", headers={
        "Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"})
