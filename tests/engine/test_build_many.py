"""Building many jobs at once: same records as one by one, errors in place, order kept."""

from __future__ import annotations

import tickq
from tickq.engine.producer import JobSpec
from tickq.errors import JobDataError, UnknownJobTypeError, ValidationError


def _push(n: int) -> dict[str, object]:
    return {"userId": f"u{n}", "title": f"Doors open {n}", "body": "Starts in one hour."}


EMAIL = {"to": "fan@example.com", "template": "payment-confirmation", "from": "box@example.com"}


def test_a_mixed_batch_keeps_its_order_and_reports_each_problem_in_place() -> None:
    engine = tickq.Engine(tickq.open_store("memory://"))
    specs = [JobSpec(type="send-push", data=_push(0)),
             JobSpec(type="send-email", data={"to": "not an address", "template": "x"}),
             JobSpec(type="send-email", data=EMAIL),
             JobSpec(type="send-push", data=_push(1), priority=11),
             JobSpec(type="no-such-type", data={}),
             JobSpec(type="send-push", data=_push(2))]
    built = engine.build_many(specs)
    assert [type(b).__name__ for b in built] == [
        "Job", "JobDataError", "Job", "ValidationError", "UnknownJobTypeError", "Job"]
    jobs = [b for b in built if isinstance(b, tickq.Job)]
    # ids are handed out in the batch's order, across types
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert [j.type for j in jobs] == ["send-push", "send-email", "send-push"]
    bad_data = built[1]
    assert isinstance(bad_data, JobDataError)
    assert [d["field"] for d in bad_data.details] == ["data.to"]
    bad_priority = built[3]
    assert isinstance(bad_priority, ValidationError) and bad_priority.field == "priority"
    assert isinstance(built[4], UnknownJobTypeError)


def test_bulk_validation_gives_the_records_one_by_one_validation_gives() -> None:
    engine = tickq.Engine(tickq.open_store("memory://"))
    specs = [JobSpec(type="send-email", data=EMAIL), JobSpec(type="send-email", data=EMAIL),
             JobSpec(type="payment-process", data={
                 "userId": "u1", "venueId": "v1", "eventId": "e1", "amount": 1500,
                 "currency": "eur", "paymentMethod": "pm_card_visa"})]
    many = engine.build_many(specs)
    for spec, job in zip(specs, many, strict=True):
        assert isinstance(job, tickq.Job)
        one = engine.build(spec)
        assert (job.data, job.idempotency_key, job.priority, job.max_attempts) == (
            one.data, one.idempotency_key, one.priority, one.max_attempts)
    email = many[0]
    assert isinstance(email, tickq.Job)
    assert email.data == {**EMAIL, "data": {}}  # defaults filled, the alias kept
    payment = many[2]
    assert isinstance(payment, tickq.Job) and payment.data["currency"] == "EUR"


async def test_enqueue_many_still_refuses_the_whole_batch_for_one_bad_spec() -> None:
    async with tickq.open("memory://", shutdown_grace_s=1.0) as engine:
        specs = [JobSpec(type="send-push", data=_push(0)),
                 JobSpec(type="send-push", data={"userId": "u"})]
        try:
            await engine.enqueue_many(specs)
        except JobDataError as exc:
            assert exc.details and exc.details[0]["field"] == "data.title"
        else:
            raise AssertionError("the batch was accepted")
        assert await engine.list_jobs(tickq.JobQuery()) == []


def test_the_enqueue_constructor_sets_every_field_the_keyword_one_does() -> None:
    # new_waiting is a hand-written copy of Job(...) for speed: a field added to Job and not
    # to it would be left unset (an AttributeError on first read) or set differently.
    from tickq.engine.job import Job, new_waiting

    args = dict(id="j1", queue="communication", type="send-push", data_json=b"{}", priority=7,
                max_attempts=4, run_at=20.0, created_at=10.0, tenant_id="t1", user_id="u1",
                idempotency_key="k", expires_at=30.0, callback_url="https://example.com/cb",
                ordering_key="o")
    fast = new_waiting(**args)  # type: ignore[arg-type]
    slow = Job(**args)  # type: ignore[arg-type]
    assert {name: getattr(fast, name) for name in Job.__slots__} == \
        {name: getattr(slow, name) for name in Job.__slots__}
