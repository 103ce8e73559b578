"""The integrations seam: what gets installed, what a missing setting does, readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

import tickq
from tickq.engine.job import Job
from tickq.engine.states import JobState
from tickq.processors import Integrations, Readiness
from tickq.processors.base import Integration, Processor


@asynccontextmanager
async def running(url: str) -> AsyncIterator[tickq.Engine]:
    async with tickq.open(url, shutdown_grace_s=1.0) as engine:
        yield engine


class Recorder(Integration):
    """An integration whose processor records what it ran, and whose start can fail."""

    name = "recorder"
    job_types = ("send-sms",)
    providers = ("twilio-sms",)

    def __init__(self, *, missing: list[str] | None = None, fail_start: bool = False,
                 log: list[str] | None = None) -> None:
        super().__init__()
        self.missing = list(missing or [])
        self.fail_start = fail_start
        self.log = log if log is not None else []
        self.ran: list[str] = []

    def processors(self) -> Mapping[str, Processor]:
        async def run(job: Job) -> Any:
            self.ran.append(job.id)
            return {"sent": True}
        return {"send-sms": run}

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError("cannot connect")

    async def close(self) -> None:
        self.log.append(f"close {self.name}")


SMS = {"to": "+15550001111", "message": "hello"}


async def test_a_missing_setting_fails_the_job_naming_the_variable() -> None:
    async with running("memory://") as engine:
        Integrations(engine, [Recorder(missing=["TWILIO_ACCOUNT_SID"])]).install()
        job = await engine.enqueue("send-sms", SMS)
        done = await engine.wait(job.id, timeout=5)
    assert done.state is JobState.FAILED
    assert done.attempts == 1  # permanent: straight to the dead-letter queue
    [error] = done.errors
    assert error.code == "not_configured"
    assert "TWILIO_ACCOUNT_SID" in error.message and "recorder" in error.message


async def test_a_configured_integration_runs_its_processor() -> None:
    integration = Recorder()
    async with running("memory://") as engine:
        Integrations(engine, [integration]).install()
        job = await engine.enqueue("send-sms", SMS)
        done = await engine.wait(job.id, timeout=5)
    assert done.state is JobState.COMPLETED and done.result == {"sent": True}
    assert integration.ran == [job.id]


async def test_install_keeps_a_processor_the_application_registered() -> None:
    mine: list[str] = []
    integration = Recorder()
    async with running("memory://") as engine:
        engine.register("send-sms", lambda job: mine.append(job.id))
        Integrations(engine, [integration]).install()
        job = await engine.enqueue("send-sms", SMS)
        await engine.wait(job.id, timeout=5)
    assert mine == [job.id] and integration.ran == []


async def test_status_is_ready_degraded_or_not_configured() -> None:
    async with running("memory://") as engine:
        ready = Recorder()
        absent = Recorder(missing=["PUSH_API_URL"])
        absent.name = "absent"
        integrations = Integrations(engine, [ready, absent])
        status = integrations.status()
        assert status["recorder"].status is Readiness.READY
        assert status["recorder"].providers == {"twilio-sms": "closed"}
        assert status["absent"].status is Readiness.NOT_CONFIGURED
        assert "PUSH_API_URL" in (status["absent"].message or "")
        breaker = engine.providers.breakers.get("twilio-sms")
        now = engine.clock.now()
        for _ in range(50):
            breaker.record(False, now)
        status = integrations.status()
        assert status["recorder"].status is Readiness.DEGRADED
        assert status["recorder"].providers["twilio-sms"] == "open"
        assert status["recorder"].to_dict()["status"] == "degraded"


async def test_a_failed_start_closes_what_was_started() -> None:
    log: list[str] = []
    first, second = Recorder(log=log), Recorder(fail_start=True, log=log)
    first.name, second.name = "first", "second"
    skipped = Recorder(missing=["X"], log=log)
    async with running("memory://") as engine:
        integrations = Integrations(engine, [first, skipped, second])
        with pytest.raises(RuntimeError, match="cannot connect"):
            await integrations.start()
    # not-configured integrations are never started; the failing one is closed, then the rest
    assert log == ["start first", "start second", "close second", "close first"]


def test_job_data_that_does_not_fit_its_contract_is_a_permanent_error() -> None:
    from tickq.engine.jobtypes import SmsData
    from tickq.errors import PermanentError
    from tickq.processors.base import job_data

    job = Job(id="j1", queue="communication", type="send-sms",
              data_json=b'{"to": "+15550001111"}', priority=5, max_attempts=3, run_at=0.0,
              created_at=0.0)
    with pytest.raises(PermanentError) as refused:
        job_data(SmsData, job)
    assert refused.value.code == "invalid_job_data"
    assert "message: Field required" in refused.value.message
    good = Job(id="j2", queue="communication", type="send-sms",
               data_json=b'{"to": "+15550001111", "message": "hi"}', priority=5,
               max_attempts=3, run_at=0.0, created_at=0.0)
    assert job_data(SmsData, good).message == "hi"
