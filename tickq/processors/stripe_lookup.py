"""Finding what an earlier attempt of a job did at Stripe, before moving money again.

An attempt that died (process killed, lease lost, timeout) or failed after sending its request
(a 5xx, a reset connection) may have charged, refunded or paid out anyway. Stripe's
Idempotency-Key makes a repeated request return the first one's result, but only for 24 hours,
only at Stripe itself (localstripe, used in development and tests, ignores the header), and only
if the repeat carries exactly the same parameters. So every attempt after the first asks Stripe
first: every object tickq creates carries `metadata.tickq_job_id`, and a listing filtered to the
objects that could be the job's is searched for that id.

The bound: a listing covers the time earlier attempts can have acted in, from the job's
creation to the end of its previous attempt (each widened by `SKEW_S` for clock differences
between this host and Stripe and for a request Stripe finished after we gave up on it), through
`created[gte]` and `created[lte]`, newest first, and reads at most `MAX_PAGES` pages of
`PAGE_SIZE`. Nothing of the job's can lie outside that window; the page cap bounds the cost on a
busy account (2,000 objects is about 80 seconds of traffic at the spec's 25 requests/s). Should
the cap be reached without a match, the attempt goes ahead and the Idempotency-Key still
protects it: a money job that has not started within 24 hours expires, inside Stripe's key
retention (an operator's retry from the dead-letter queue later than that relies on the lookup
alone). Refunds are listed by their payment instead, a handful at most.

localstripe refuses `created` on PaymentIntents and payouts ("Unexpected created"); when a
server refuses it once, listings by this `Lookup` go unfiltered (oldest first there) under the
same page cap.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import stripe

from tickq.engine.job import Job
from tickq.errors import PermanentError
from tickq.processors.stripe_errors import call
from tickq.processors.stripe_status import tagged_job_id

log = logging.getLogger(__name__)

#: objects per listing page (Stripe's maximum)
PAGE_SIZE = 100
#: pages read at most per lookup
MAX_PAGES = 20
#: seconds before the job's creation a listing starts, for clock differences
SKEW_S = 600


L = TypeVar("L", bound=stripe.StripeObject)


class _Page(Protocol[L]):
    data: list[L]
    has_more: bool


ListPage = Callable[[dict[str, Any]], Awaitable[_Page[L]]]


class Lookup:
    """Searches for the objects a job created; remembers whether the server honours
    `created[gte]` (see the module docstring)."""

    def __init__(self) -> None:
        self.time_filter = True

    async def tagged(self, list_page: ListPage[L], job: Job, provider: str, *,
                     filters: Mapping[str, Any] | None = None, window: bool = True) -> list[L]:
        """Every object of the listing whose metadata names `job`, in listing order.

        `filters` narrow the listing (a refund's payment); `window` adds the time window from
        the job's creation, for listings that could otherwise span the whole account."""
        params: dict[str, Any] = {"limit": PAGE_SIZE, **(filters or {})}
        if window and self.time_filter:
            params["created"] = created_window(job)
        found: list[L] = []
        pages = 0
        while pages < MAX_PAGES:
            try:
                page = await call(provider, list_page(params))
            except PermanentError as exc:
                if "created" in params and _refuses_created(exc.__cause__):
                    self.time_filter = False
                    del params["created"]
                    continue
                raise
            pages += 1
            found.extend(obj for obj in page.data if tagged_job_id(obj.to_dict()) == job.id)
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1]["id"]
        else:
            log.warning("reconcile lookup stopped at its page limit",
                        extra={"event": "stripe_lookup_bounded", "job_id": job.id,
                               "provider": provider, "pages": MAX_PAGES})
        if len(found) > 1:
            log.error("more than one Stripe object carries this job's id",
                      extra={"event": "stripe_duplicate_effect", "job_id": job.id,
                             "provider": provider, "objects": [o["id"] for o in found]})
        return found


def created_window(job: Job) -> dict[str, int]:
    """`created` bounds (Stripe's epoch seconds) of what earlier attempts of `job` can have
    created: from the job's creation to its last recorded failure, widened by `SKEW_S`."""
    window = {"gte": int(job.created_at - SKEW_S)}
    errors = job.errors
    if errors:
        window["lte"] = int(errors[-1].at + SKEW_S) + 1
    return window


def _refuses_created(cause: BaseException | None) -> bool:
    if not isinstance(cause, stripe.InvalidRequestError):
        return False
    return "created" in f"{cause.param or ''} {cause.user_message or ''}"


__all__ = ["MAX_PAGES", "PAGE_SIZE", "SKEW_S", "ListPage", "Lookup", "created_window"]
