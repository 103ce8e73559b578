"""Webhooks the providers send us: POST /api/v1/queue/webhooks/stripe.

    POST /webhooks/stripe   a Stripe event, signed (public: no bearer token)            200

Stripe tells us how a payment, refund or payout ended after the job that started it completed
(a payment that needed 3-D Secure, a payout that takes days), or that one failed after all. The
route is public because Stripe sends no token; the `Stripe-Signature` header, an HMAC of the raw
body under STRIPE_WEBHOOK_SECRET with a timestamp, is what authenticates it, and one older than
five minutes is refused, so a captured delivery cannot be replayed later.

Answers:

* 200 `{"received": true, "duplicate": false, "matched": true, "jobId": ...}`: the event was
  recorded in the result of the job that created its object (found by the object's
  `metadata.tickq_job_id`; see `tickq.processors.stripe_status`). A redelivery of an event
  already recorded answers `duplicate: true` and changes nothing, across restarts too, since the
  event ids live in the job's result.
* 200 with `matched: false`: the event concerns nothing tickq created (another integration's
  payment, an event type tickq does not track); acknowledged so that Stripe stops resending it.
* 409 `job_not_finished`: the job is still waiting or running. Its run writes its own result,
  which would overwrite the event; Stripe resends a refused event later (for up to three
  days), by when the job has finished.
* 400 `missing_signature`, `invalid_signature`, `stale_signature`, `invalid_payload`.
* 503 `stripe_webhooks_not_configured` while STRIPE_WEBHOOK_SECRET is unset: unverifiable
  events are not accepted, and a 5xx makes Stripe keep them for redelivery once it is set
  (a 404 would look like a wrong URL).
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from aiohttp import web

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.errors import IllegalTransitionError, ValidationError
from tickq.http.keys import ENGINE, REQUEST_ID, SETTINGS
from tickq.http.responses import error_response, json_response
from tickq.processors.stripe_status import JOB_TYPES, apply_event, seen, tagged_job_id

log = logging.getLogger(__name__)

STRIPE_PATH = "/api/v1/queue/webhooks/stripe"
#: seconds a signature's timestamp may lie in the past (Stripe's own default)
TOLERANCE_S = 300
routes = web.RouteTableDef()


@routes.post(STRIPE_PATH)
async def stripe_webhook(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS].stripe_webhook_secret
    if secret is None:
        return error_response(503, "stripe_webhooks_not_configured",
                              "Stripe webhooks are not configured: set STRIPE_WEBHOOK_SECRET",
                              request_id=request.get(REQUEST_ID))
    payload = await request.read()
    event = verified_event(payload, request.headers.get("Stripe-Signature"),
                           secret.get_secret_value())
    try:
        answer = await record_event(request.app[ENGINE], event)
    except IllegalTransitionError as exc:
        return error_response(409, "job_not_finished",
                              f"{exc.message}; send the event again later",
                              request_id=request.get(REQUEST_ID))
    return json_response(answer)


def verified_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event in `payload` once its signature verifies, as plain data; `ValidationError`
    (400) naming the problem otherwise."""
    if not signature:
        raise ValidationError("no Stripe-Signature header", code="missing_signature")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in (exc.user_message or ""):
            raise ValidationError(f"the Stripe-Signature timestamp is more than {TOLERANCE_S} s "
                                  "old", code="stale_signature") from None
        raise ValidationError("the Stripe-Signature does not match the body",
                              code="invalid_signature") from None
    except ValueError:
        raise ValidationError("the body is not a Stripe event", code="invalid_payload") from None
    data: dict[str, Any] = event.to_dict()
    obj = (data.get("data") or {}).get("object")
    if not isinstance(data.get("id"), str) or not isinstance(obj, dict):
        raise ValidationError("the event has no id or no data.object", code="invalid_payload")
    return data


async def record_event(engine: Engine, event: dict[str, Any]) -> dict[str, Any]:
    """Record `event` in the result of the job whose object it is about (see the module
    docstring for the answers)."""
    obj: dict[str, Any] = event["data"]["object"]
    job_id = tagged_job_id(obj)
    job_type = JOB_TYPES.get(str(obj.get("object")))
    job = await engine.get(job_id) if job_id is not None and job_type is not None else None
    if job is None or job.type != job_type:
        log.info("stripe event for no job of ours", extra={
            "event": "stripe_webhook_unmatched", "stripe_event": event["id"],
            "type": event.get("type"), "job_id": job_id})
        return {"received": True, "duplicate": False, "matched": False}
    duplicate = False

    def change(current: Job) -> Any:
        nonlocal duplicate
        if seen(current.result, event["id"]):
            duplicate = True
            return current.result
        return apply_event(current.result, current.type, event)

    updated = await engine.update_result(job.id, change)
    result = updated.result
    log.info("stripe event recorded", extra={
        "event": "stripe_webhook", "stripe_event": event["id"], "type": event.get("type"),
        "job_id": job.id, "duplicate": duplicate,
        "status": result.get("status") if isinstance(result, dict) else None})
    return {"received": True, "duplicate": duplicate, "matched": True, "jobId": job.id}
