"""Rate limits and breakers: status, check, reset, emergency stop and resume, GET /breakers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpkit import Api, auth, email

LIMITS = "/api/v1/queue/rate-limits"


async def call(api: Api, method: str, path: str, status: int = 200, json: Any = None,
               **who: Any) -> Any:
    resp = await api.client.request(method, path, json=json, headers=auth(**who))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_status_of_a_provider_uses_the_spec_fields(api: Api) -> None:
    out = await call(api, "GET", f"{LIMITS}/status/stripe", role="user")
    s = out["stripe"]
    assert (s["tokensAvailable"], s["concurrent"], s["maxConcurrent"]) == (50, 0, 10)
    assert s["config"] == {"maxPerSecond": 25.0, "maxConcurrent": 10, "burstSize": 50,
                           "cooldownMs": 1000}
    assert (s["stopped"], s["rateLimited"], s["waitTimeMs"]) == (False, False, 0)
    member = (await call(api, "GET", f"{LIMITS}/status/stripe-refunds"))["stripe-refunds"]
    assert member["bucket"] == "stripe"
    everything = await call(api, "GET", f"{LIMITS}/status")
    assert {"stripe", "twilio", "sendgrid"} <= set(everything)


async def test_unknown_service_is_404_and_a_token_is_needed(api: Api) -> None:
    for method, path in (("GET", f"{LIMITS}/status/nope"), ("GET", f"{LIMITS}/check/nope"),
                         ("POST", f"{LIMITS}/reset/nope")):
        out = await call(api, method, path, 404)
        assert (out["code"], out["error"]) == ("service_not_found", "Not Found")
        assert "stripe" in out["message"]
    out = await call(api, "POST", f"{LIMITS}/emergency-stop", 404, json={"service": "nope"})
    assert out["code"] == "service_not_found"
    assert (await api.client.get(f"{LIMITS}/check/stripe")).status == 401


async def test_check_reflects_tokens_and_reset_refills_them(api: Api) -> None:
    assert await call(api, "GET", f"{LIMITS}/check/sendgrid") == {
        "service": "sendgrid", "bucket": "sendgrid", "rateLimited": False, "reason": None,
        "waitTimeMs": 0, "waitTimeSeconds": 0}
    limiter, now = api.engine.providers.limiter, api.engine.clock.now()
    for _ in range(100):  # spend the whole burst
        assert limiter.try_acquire("sendgrid", now).granted
        limiter.release("sendgrid", now)
    out = await call(api, "GET", f"{LIMITS}/check/sendgrid")
    assert (out["rateLimited"], out["reason"]) == (True, "no_tokens")
    assert 0 < out["waitTimeMs"] <= 200 and out["waitTimeSeconds"] == 1
    out = await call(api, "POST", f"{LIMITS}/reset/sendgrid")
    assert out == {"service": "sendgrid", "status": "reset",
                   "message": "Rate limiter for sendgrid has been reset"}
    status = (await call(api, "GET", f"{LIMITS}/status/sendgrid"))["sendgrid"]
    assert status["tokensAvailable"] == 100 and status["rateLimited"] is False


@pytest.mark.parametrize(("method", "path"), [
    ("POST", f"{LIMITS}/reset/stripe"), ("POST", f"{LIMITS}/emergency-stop"),
    ("POST", f"{LIMITS}/resume")])
@pytest.mark.parametrize("role", ["user", "venue_admin", "monitoring", "service"])
async def test_limit_actions_are_admin_only(api: Api, method: str, path: str, role: str) -> None:
    assert (await call(api, method, path, 403, role=role))["code"] == "forbidden"
    assert not api.engine.providers.limiter.status("stripe", 0)["stopped"]


async def test_emergency_stop_holds_a_providers_jobs_and_resume_runs_them(api: Api) -> None:
    out = await call(api, "POST", f"{LIMITS}/emergency-stop", json={"service": "sendgrid"})
    assert out == {"status": "stopped", "service": "sendgrid",
                   "message": "The rate limiter for sendgrid has been paused"}
    check = await call(api, "GET", f"{LIMITS}/check/sendgrid-transactional")
    assert (check["rateLimited"], check["reason"], check["waitTimeMs"]) == (
        True, "stopped", None)
    assert (await call(api, "GET", f"{LIMITS}/check/stripe"))["rateLimited"] is False
    job_id = await api.enqueue(email())
    await asyncio.sleep(0.3)
    job = await api.engine.get(job_id)
    assert job is not None and (job.state.value, job.attempts) == ("waiting", 0)
    out = await call(api, "POST", f"{LIMITS}/resume", json={"service": "sendgrid"})
    assert (out["status"], out["service"]) == ("resumed", "sendgrid")
    await api.wait_state(job_id, "completed")


async def test_emergency_stop_without_a_body_stops_everything(api: Api) -> None:
    out = await call(api, "POST", f"{LIMITS}/emergency-stop")
    assert out == {"status": "stopped", "service": None,
                   "message": "All rate limiters have been paused"}
    everything = await call(api, "GET", f"{LIMITS}/status")
    assert all(s["stopped"] for s in everything.values())
    job_id = await api.enqueue(email())
    await asyncio.sleep(0.2)
    assert (await api.engine.get(job_id)).state.value == "waiting"  # type: ignore[union-attr]
    out = await call(api, "POST", f"{LIMITS}/resume")
    assert out["message"] == "All rate limiters have been resumed"
    await api.wait_state(job_id, "completed")


@pytest.mark.parametrize("body", [{"service": ""}, {"service": 3}, {"provider": "stripe"}, [1]])
async def test_stop_validates_its_body(api: Api, body: Any) -> None:
    await call(api, "POST", f"{LIMITS}/emergency-stop", 400, json=body)
    assert not api.engine.providers.limiter.status("stripe", 0)["stopped"]


async def test_breakers_show_each_provider_and_reset_closes_one(api: Api) -> None:
    out = await call(api, "GET", "/api/v1/queue/breakers", role="monitoring")
    assert out["breakers"]["stripe"]["state"] == "closed"
    assert out["breakers"]["stripe"]["retryAt"] is None
    board, now = api.engine.providers.breakers, api.engine.clock.now()
    for _ in range(5):
        board.record("twilio", False, now)
    twilio = (await call(api, "GET", "/api/v1/queue/breakers"))["breakers"]["twilio"]
    assert twilio["state"] == "open"
    assert twilio["openRemainingMs"] > 0 and twilio["retryAt"].endswith("Z")
    check = await call(api, "GET", f"{LIMITS}/check/twilio-sms")
    assert (check["rateLimited"], check["reason"]) == (True, "circuit_open")
    assert check["waitTimeMs"] > 0
    await call(api, "POST", f"{LIMITS}/reset/twilio")
    twilio = (await call(api, "GET", "/api/v1/queue/breakers"))["breakers"]["twilio"]
    assert twilio["state"] == "closed"
