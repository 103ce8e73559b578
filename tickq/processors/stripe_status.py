"""What a Stripe object's status means for the job that created it, and how Stripe's later word
(a webhook event) is recorded in that job's result.

A job's result carries `status`, tickq's summary, next to `stripeStatus`, Stripe's own:

* `succeeded`: the money moved (a PaymentIntent `succeeded`, a refund `succeeded`, a payout
  `paid`);
* `pending`: Stripe accepted the request but the money has not moved yet (a PaymentIntent that
  is `processing` or `requires_action`, a refund `pending`, a payout `pending`/`in_transit`).
  The job completes, because no retry can speed this up, and the webhook records the end;
* `failed`: Stripe says it did not happen (only ever set by a webhook on a finished job; at
  processing time a failure is an error, and the job goes to the dead-letter queue).

Webhook events arrive at least once and in no guaranteed order. Each one applied is remembered
by id in the result (`webhookEvents`), which is what makes a redelivery a no-op across
restarts without a table of its own. An event older than the last one applied, or one that
would turn a final status back into `pending`, is remembered but changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

SUCCEEDED, PENDING, FAILED = "succeeded", "pending", "failed"
FINAL = frozenset({SUCCEEDED, FAILED})

#: Stripe object type -> (its status -> tickq's summary); statuses not listed are pending
STATUS_MAPS: Final[Mapping[str, Mapping[str, str]]] = {
    "payment_intent": {"succeeded": SUCCEEDED, "requires_payment_method": FAILED,
                       "canceled": FAILED},
    "refund": {"succeeded": SUCCEEDED, "failed": FAILED, "canceled": FAILED},
    "payout": {"paid": SUCCEEDED, "failed": FAILED, "canceled": FAILED},
}
#: the job type whose result an event about this kind of object updates
JOB_TYPES: Final[Mapping[str, str]] = {"payment_intent": "payment-process",
                                       "refund": "refund-process", "payout": "payout-process"}
#: where each job type's result names the Stripe object it created
RESULT_ID_FIELD: Final[Mapping[str, str]] = {"payment-process": "paymentIntentId",
                                             "refund-process": "refundId",
                                             "payout-process": "payoutId"}
#: the metadata key every object tickq creates carries: the id of the job that created it
JOB_ID_KEY = "tickq_job_id"
#: events remembered per job; far more than one object ever produces (created, processing,
#: succeeded, a few updates), so only a runaway sender is cut off, oldest first
MAX_EVENTS = 100


def summary(object_type: str, stripe_status: str | None) -> str:
    """tickq's `status` for a Stripe object's status."""
    return STATUS_MAPS.get(object_type, {}).get(stripe_status or "", PENDING)


def tagged_job_id(obj: Mapping[str, Any]) -> str | None:
    """The id of the job that created a Stripe object, from the metadata tickq attached."""
    metadata = obj.get("metadata")
    value = metadata.get(JOB_ID_KEY) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) and value else None


def seen(result: object, event_id: str) -> bool:
    """Whether the event was already recorded in the result."""
    events = result.get("webhookEvents") if isinstance(result, Mapping) else None
    return isinstance(events, list) and any(
        isinstance(e, Mapping) and e.get("id") == event_id for e in events)


def apply_event(result: object, job_type: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The result with `event` recorded, and its status applied when it is about the object
    the job created (or the job recorded none: it failed before knowing it) and it is not
    stale. The caller checks `seen` first; applying a seen event again records it twice."""
    out: dict[str, Any] = dict(result) if isinstance(result, Mapping) else {}
    obj = event["data"]["object"]
    object_type = str(obj.get("object") or "")
    object_id = obj.get("id")
    created = event.get("created")
    history = [e for e in out.get("webhookEvents") or [] if isinstance(e, Mapping)]
    latest = max((e.get("created") or 0 for e in history if e.get("applied")), default=0)
    new_status = summary(object_type, obj.get("status"))
    id_field = RESULT_ID_FIELD.get(job_type, "")
    ours = out.get(id_field) in (None, object_id)
    stale = isinstance(created, int | float) and created < latest
    backwards = out.get("status") in FINAL and new_status not in FINAL
    applied = ours and not stale and not backwards
    if applied:
        if out.get(id_field) is None and object_id is not None:
            out[id_field] = object_id
        out["status"] = new_status
        out["stripeStatus"] = obj.get("status")
        failure = _failure(obj)
        if failure is not None:
            out["failureCode"], out["failureMessage"] = failure
    history.append({"id": event.get("id"), "type": event.get("type"), "created": created,
                    "objectId": object_id, "applied": applied})
    out["webhookEvents"] = history[-MAX_EVENTS:]
    return out


def _failure(obj: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
    """Stripe's reason for a failed payment, refund or payout, when the object gives one."""
    error = obj.get("last_payment_error")
    if isinstance(error, Mapping) and (error.get("code") or error.get("message")):
        return error.get("code"), error.get("message")
    code = obj.get("failure_code") or obj.get("failure_reason")
    if code or obj.get("failure_message"):
        return code, obj.get("failure_message")
    return None


__all__ = ["FAILED", "JOB_ID_KEY", "JOB_TYPES", "PENDING", "RESULT_ID_FIELD", "SUCCEEDED",
           "apply_event", "seen", "summary", "tagged_job_id"]
