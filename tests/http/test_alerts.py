"""/api/v1/queue/alerts: listing, acknowledging and testing alerts, with their roles and audit
entries. Delivery to real receivers is covered in tests/test_monitoring_channels.py; here no
channel is configured, which the answers must say."""

from __future__ import annotations

from typing import Any

import pytest
from httpkit import Api, auth, serve_api

from tickq.clock import FakeClock
from tickq.engine.monitor import AlertType, Severity
from tickq.http.alerts import MONITOR
from tickq.storage.base import NewAlert

ALERTS = "/api/v1/queue/alerts"
T0 = 1_800_000_000.0
HOUR = 3600.0


async def add_alert(api: Api, *, at: float, severity: str = "critical",
                    queue: str = "money") -> int:
    alert = await api.engine.store.alert_insert(NewAlert(
        severity=severity, alert_type="queue_depth",
        message=f"CRITICAL: Money queue has 75 jobs waiting ({at})", queue_name=queue,
        metric_value=75.0, threshold_value=50.0, created_at=at))
    return alert.id


async def listed(api: Api, query: str = "", role: str = "admin") -> dict[str, Any]:
    resp = await api.client.get(f"{ALERTS}{query}", headers=auth(role))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def audit(api: Api, action: str) -> list[dict[str, Any]]:
    resp = await api.client.get(f"/api/v1/queue/audit?action={action}", headers=auth())
    entries: list[dict[str, Any]] = (await resp.json())["entries"]
    return entries


async def test_alerts_of_the_last_day_newest_first_in_the_specs_shape() -> None:
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        old = await add_alert(api, at=T0 - 25 * HOUR)
        first = await add_alert(api, at=T0 - HOUR)
        second = await add_alert(api, at=T0 - 60, severity="warning", queue="communication")

        body = await listed(api)
        assert body["count"] == 2
        assert [a["id"] for a in body["alerts"]] == [second, first]
        assert body["alerts"][1] == {
            "id": first, "severity": "critical", "alert_type": "queue_depth",
            "message": f"CRITICAL: Money queue has 75 jobs waiting ({T0 - HOUR})",
            "queue_name": "money", "metric_value": 75, "threshold_value": 50,
            "acknowledged": False, "acknowledged_by": None, "acknowledged_at": None,
            "created_at": "2027-01-15T07:00:00.000Z", "channels": {}}
        assert [a["id"] for a in (await listed(api, "?severity=critical"))["alerts"]] == [first]
        assert [a["id"] for a in (await listed(api, "?limit=1"))["alerts"]] == [second]
        assert [a["id"] for a in (await listed(api, "?hours=48"))["alerts"]] == [
            second, first, old]
        assert [a["id"] for a in (await listed(api, "?queue=communication"))["alerts"]] == [
            second]
        assert (await listed(api, role="monitoring"))["count"] == 2


@pytest.mark.parametrize("query", ["?severity=loud", "?limit=0", "?limit=101", "?hours=0",
                                   "?hours=169", "?acknowledged=maybe", "?colour=red"])
async def test_bad_listing_queries_are_refused(api: Api, query: str) -> None:
    resp = await api.client.get(f"{ALERTS}{query}", headers=auth())
    body = await resp.json()
    assert resp.status == 400, body
    assert body["code"] == "validation_error" and body["details"]


@pytest.mark.parametrize("role", ["user", "venue_admin", "service"])
async def test_tenant_roles_may_not_read_alerts(api: Api, role: str) -> None:
    resp = await api.client.get(ALERTS, headers=auth(role))
    assert resp.status == 403
    assert (await api.client.get(ALERTS)).status == 401


async def test_acknowledge_records_who_and_when_once() -> None:
    clock = FakeClock(T0)
    async with serve_api(clock=clock) as api:
        alert_id = await add_alert(api, at=T0 - 60)
        clock.advance(30)

        resp = await api.client.post(f"{ALERTS}/{alert_id}/acknowledge",
                                     headers=auth(user="oncall-1"))
        body = await resp.json()
        assert resp.status == 200, body
        assert (body["alertId"], body["status"], body["acknowledgedBy"],
                body["acknowledgedAt"], body["alreadyAcknowledged"]) == (
            str(alert_id), "acknowledged", "oncall-1", "2027-01-15T08:00:30.000Z", False)
        [shown] = (await listed(api, "?acknowledged=true"))["alerts"]
        assert (shown["id"], shown["acknowledged"], shown["acknowledged_by"]) == (
            alert_id, True, "oncall-1")
        assert (await listed(api, "?acknowledged=false"))["count"] == 0

        # A second acknowledgement keeps the first one.
        resp = await api.client.post(f"{ALERTS}/{alert_id}/acknowledge",
                                     headers=auth(user="oncall-2"))
        body = await resp.json()
        assert resp.status == 200
        assert (body["acknowledgedBy"], body["alreadyAcknowledged"]) == ("oncall-1", True)

        entries = await audit(api, "alert.acknowledge")
        assert [(e["outcome"], e["userId"], e["target"]) for e in entries] == [
            ("ok", "oncall-2", str(alert_id)), ("ok", "oncall-1", str(alert_id))]


@pytest.mark.parametrize("alert_id", ["999", "abc", "0", "-1", "1" * 30])
async def test_acknowledging_an_unknown_alert_is_404(api: Api, alert_id: str) -> None:
    resp = await api.client.post(f"{ALERTS}/{alert_id}/acknowledge", headers=auth())
    body = await resp.json()
    assert resp.status == 404, body
    assert body["code"] == "alert_not_found"


@pytest.mark.parametrize("role", ["monitoring", "user", "venue_admin", "service"])
async def test_only_admins_acknowledge(api: Api, role: str) -> None:
    alert_id = await add_alert(api, at=api.engine.clock.now())
    resp = await api.client.post(f"{ALERTS}/{alert_id}/acknowledge", headers=auth(role))
    assert resp.status == 403
    alert = await api.engine.store.alert_get(alert_id)
    assert alert is not None and not alert.acknowledged
    [entry] = await audit(api, "alert.acknowledge")
    assert (entry["outcome"], entry["role"]) == ("denied", role)


async def test_test_alert_reports_unconfigured_channels_and_is_stored(api: Api) -> None:
    resp = await api.client.post(f"{ALERTS}/test", json={"severity": "warning"},
                                 headers=auth(user="admin-7"))
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["status"], body["severity"], body["channel"]) == (
        "incomplete", "warning", "all")
    channels = body["channels"]
    assert {c: v["status"] for c, v in channels.items()} == {
        "log": "logged", "stored": "stored", "webhook": "not_configured",
        "email": "not_configured", "sms": "not_configured"}
    assert "ADMIN_WEBHOOK_URL" in channels["webhook"]["reason"]
    assert "ADMIN_EMAIL" in channels["email"]["reason"]
    assert "ALERT_SMS_TO" in channels["sms"]["reason"]
    assert "not_configured" in body["message"]

    [stored] = (await listed(api))["alerts"]
    assert (stored["id"], stored["alert_type"], stored["severity"]) == (
        int(body["alertId"]), "test", "warning")
    assert "admin-7" in stored["message"]
    assert stored["channels"]["email"] == "not_configured"
    [entry] = await audit(api, "alert.test")
    assert (entry["outcome"], entry["userId"], entry["target"]) == (
        "ok", "admin-7", body["alertId"])
    # A test never starts a cooldown.
    monitor = api.client.app[MONITOR].monitor
    assert monitor.quiet_until(None, AlertType.TEST, Severity.WARNING) is None


async def test_a_test_of_one_channel_skips_the_others(api: Api) -> None:
    resp = await api.client.post(f"{ALERTS}/test", json={"channel": "log"}, headers=auth())
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "sent" and body["message"] == "Test alert sent successfully"
    assert {c: v["status"] for c, v in body["channels"].items()} == {
        "log": "logged", "stored": "stored", "webhook": "skipped", "email": "skipped",
        "sms": "skipped"}
    # No body at all: every channel, severity info.
    resp = await api.client.post(f"{ALERTS}/test", headers=auth())
    assert resp.status == 200
    assert (await resp.json())["severity"] == "info"


@pytest.mark.parametrize("body", [{"severity": "loud"}, {"channel": "pager"},
                                  {"waitS": 31}, {"extra": 1}, {"severity": 3}])
async def test_bad_test_requests_are_refused(api: Api, body: dict[str, Any]) -> None:
    resp = await api.client.post(f"{ALERTS}/test", json=body, headers=auth())
    answer = await resp.json()
    assert resp.status == 400, answer
    assert answer["details"]
    assert (await listed(api))["count"] == 0


@pytest.mark.parametrize("role", ["monitoring", "user", "venue_admin", "service"])
async def test_only_admins_may_test_alerts(api: Api, role: str) -> None:
    resp = await api.client.post(f"{ALERTS}/test", json={}, headers=auth(role))
    assert resp.status == 403
    assert await api.engine.store.alert_list() == []
    [entry] = await audit(api, "alert.test")
    assert entry["outcome"] == "denied"
