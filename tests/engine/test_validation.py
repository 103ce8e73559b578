"""Bad input to the engine API is refused with a typed error and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import tickq
from tickq import Engine, FakeClock, JobQuery, JobSpec, JobType, QueueCounts
from tickq.errors import (
    JobDataError,
    TickqError,
    UnknownJobTypeError,
    UnknownQueueError,
    ValidationError,
)
from tickq.storage.memory import MemoryStore

QUEUES = ("money", "communication", "background")
PAYMENT = {"userId": "u1", "venueId": "v1", "eventId": "e1", "amount": 1250,
           "paymentMethod": "pm_card_visa"}
PUSH = {"userId": "u1", "title": "Doors open", "body": "See you inside"}


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with tickq.open("memory://", clock=FakeClock()) as eng:
        yield eng


async def assert_nothing_written(engine: Engine) -> None:
    for queue in QUEUES:
        assert await engine.counts(queue) == QueueCounts(), queue
    assert await engine.list_jobs(JobQuery()) == []
    assert engine.stats["enqueued"] == 0


def assert_human(err: TickqError, *fragments: str) -> None:
    """A message a person can act on: a sentence that names what was wrong."""
    text = str(err)
    assert text == err.message
    assert len(text) > 15 and " " in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


async def test_unknown_job_type_is_refused(engine: Engine) -> None:
    with pytest.raises(UnknownJobTypeError) as info:
        await engine.enqueue("send-pigeon", {"to": "roof"})

    err = info.value
    assert (err.code, err.field) == ("unknown_job_type", "type")
    assert_human(err, "'send-pigeon'", "payment-process")
    await assert_nothing_written(engine)


async def test_registering_a_type_on_an_unknown_queue_is_refused(engine: Engine) -> None:
    async def process(job: tickq.Job) -> None:
        return None

    with pytest.raises(UnknownQueueError) as info:
        engine.register(JobType(name="carrier-pigeon", queue="aviary"), process)
    assert info.value.code == "unknown_queue"
    assert_human(info.value, "'aviary'", "'carrier-pigeon'")

    with pytest.raises(UnknownQueueError):
        engine.processor("carrier-pigeon", queue="aviary")(process)

    with pytest.raises(UnknownJobTypeError):
        engine.registry.job_type("carrier-pigeon")
    with pytest.raises(UnknownJobTypeError):
        await engine.enqueue("carrier-pigeon", {})
    await assert_nothing_written(engine)


async def test_counts_of_an_unknown_queue_are_refused(engine: Engine) -> None:
    with pytest.raises(UnknownQueueError) as info:
        await engine.counts("aviary")

    assert (info.value.code, info.value.field) == ("unknown_queue", "queue")
    assert_human(info.value, "'aviary'", "money")


@pytest.mark.parametrize(("data", "field"), [
    ({**PAYMENT, "amount": -500}, "amount"),
    ({**PAYMENT, "amount": 0}, "amount"),
    ({k: v for k, v in PAYMENT.items() if k != "venueId"}, "venueId"),
    ({**PAYMENT, "currency": "dollars"}, "currency"),
    ({**PAYMENT, "surprise": True}, "surprise"),
], ids=["negative-amount", "zero-amount", "missing-venue", "bad-currency", "unknown-field"])
async def test_data_failing_the_type_schema_names_the_field(engine: Engine,
                                                            data: dict[str, Any],
                                                            field: str) -> None:
    with pytest.raises(JobDataError) as info:
        await engine.enqueue("payment-process", data)

    err = info.value
    assert isinstance(err, ValidationError)
    assert err.code == "invalid_job_data"
    assert_human(err, "payment-process", field)
    await assert_nothing_written(engine)


async def test_data_of_a_schemaless_type_must_be_a_json_object(engine: Engine) -> None:
    engine.register(JobType(name="ping", queue="background"), lambda job: None)

    with pytest.raises(JobDataError) as info:
        await engine.enqueue("ping", ["not", "an", "object"])
    assert_human(info.value, "ping", "JSON object")

    with pytest.raises(JobDataError) as info:
        await engine.enqueue("ping", {"when": object()})
    assert info.value.code == "invalid_job_data"
    assert_human(info.value, "ping", "not JSON")
    await assert_nothing_written(engine)


@pytest.mark.parametrize("priority", [0, 11, -1, "5", True, 5.0],
                         ids=["zero", "eleven", "negative", "string", "bool", "float"])
async def test_priority_outside_one_to_ten_is_refused(engine: Engine, priority: Any) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.enqueue("payment-process", PAYMENT, priority=priority)

    err = info.value
    assert (err.code, err.field) == ("invalid_priority", "priority")
    assert_human(err, "1 to 10", repr(priority))
    await assert_nothing_written(engine)


@pytest.mark.parametrize("delay", [-1.0, -0.001, float("nan"), float("inf")])
async def test_negative_or_non_finite_delay_is_refused(engine: Engine, delay: float) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.enqueue("send-push", PUSH, delay_s=delay)

    err = info.value
    assert (err.code, err.field) == ("invalid_delay", "delay")
    assert_human(err, "delay", ">= 0")
    await assert_nothing_written(engine)


@pytest.mark.parametrize(("options", "code"), [
    ({"max_attempts": 0}, "invalid_max_attempts"),
    ({"max_attempts": 101}, "invalid_max_attempts"),
    ({"expires_in_s": 0}, "invalid_expiry"),
    ({"idempotency_key": ""}, "invalid_idempotency_key"),
    ({"idempotency_key": "k" * 256}, "invalid_idempotency_key"),
    ({"run_at": float("nan")}, "invalid_run_at"),
])
async def test_other_bad_options_are_refused_with_their_own_code(engine: Engine,
                                                                 options: dict[str, Any],
                                                                 code: str) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.enqueue("send-push", PUSH, **options)

    assert info.value.code == code
    assert_human(info.value)
    await assert_nothing_written(engine)


async def test_a_batch_with_one_bad_spec_writes_none_of_its_jobs(engine: Engine) -> None:
    good = [JobSpec(type="payment-process", data=PAYMENT),
            JobSpec(type="send-push", data=PUSH),
            JobSpec(type="cleanup-old-data", data={"dataType": "sessions", "olderThan": "7d"})]
    bad = JobSpec(type="payment-process", data={**PAYMENT, "amount": -1, "eventId": "e2"})

    with pytest.raises(JobDataError):
        await engine.enqueue_many([*good[:2], bad, good[2]])
    await assert_nothing_written(engine)

    with pytest.raises(ValidationError) as info:
        await engine.enqueue_many([*good, JobSpec(type="send-push", data=PUSH, priority=11)])
    assert info.value.code == "invalid_priority"
    await assert_nothing_written(engine)

    # the same good specs on their own are written, so the checks above could see a write
    for queue in QUEUES:
        await engine.pause(queue)
    results = await engine.enqueue_many(good)
    assert all(r.created for r in results)
    totals = [await engine.counts(q) for q in QUEUES]
    assert [c.waiting for c in totals] == [1, 1, 1]


async def test_refused_input_does_not_break_the_engine_store(engine: Engine) -> None:
    with pytest.raises(ValidationError):
        await engine.enqueue("payment-process", PAYMENT, priority=0)

    await engine.pause("money")
    job = await engine.enqueue("payment-process", PAYMENT, priority=10)
    assert (job.priority, job.queue, job.type) == (10, "money", "payment-process")
    assert (await engine.counts("money")).waiting == 1


async def test_engine_on_a_bare_memory_store_validates_the_same_way() -> None:
    engine = Engine(MemoryStore(), clock=FakeClock())
    async with engine:
        with pytest.raises(UnknownJobTypeError):
            await engine.enqueue("nope", {})
        with pytest.raises(ValidationError) as info:
            await engine.enqueue("send-push", PUSH, delay_s=-5)
        assert info.value.code == "invalid_delay"
        await assert_nothing_written(engine)


@pytest.mark.parametrize(("cls", "code"), [
    (ValidationError, "validation_error"),
    (UnknownQueueError, "unknown_queue"),
    (UnknownJobTypeError, "unknown_job_type"),
    (JobDataError, "invalid_job_data"),
])
def test_error_classes_carry_stable_codes(cls: type[ValidationError], code: str) -> None:
    assert cls.code == code
    err = cls("something was wrong with the input", field="f")
    assert (err.code, err.field, str(err)) == (code, "f", "something was wrong with the input")
    assert isinstance(err, TickqError)
    # a per-instance code overrides without changing the class
    assert cls("x", code="custom").code == "custom"
    assert cls.code == code
