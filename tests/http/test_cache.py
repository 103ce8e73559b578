"""The cache endpoints of seed-004, behind admin authentication (the spec left them open)."""

from __future__ import annotations

from httpkit import Api, auth, token

from tickq.http.keys import VERIFIER

STATS = "/api/v1/queue/cache/stats"
FLUSH = "/api/v1/queue/cache/flush"


async def test_cache_endpoints_need_a_token(api: Api) -> None:
    for resp in (await api.client.get(STATS), await api.client.post(FLUSH)):
        assert resp.status == 401 and (await resp.json())["code"] == "missing_token"


async def test_cache_endpoints_are_refused_to_everyone_but_admins(api: Api) -> None:
    for role in ("user", "venue_admin", "service", "monitoring"):
        for resp in (await api.client.get(STATS, headers=auth(role)),
                     await api.client.post(FLUSH, headers=auth(role))):
            assert resp.status == 403, role
            assert (await resp.json())["code"] == "forbidden"


async def test_stats_report_each_cache_and_a_flush_empties_the_token_cache(api: Api) -> None:
    client = api.client
    others = [token("user", user=f"u{i}") for i in range(3)]
    for t in others:
        assert (await client.get("/api/v1/queue/queues",
                                 headers={"Authorization": f"Bearer {t}"})).status == 200
    batch = {"queue": "communication", "jobs": [
        {"type": "send-email", "data": {"to": f"f{i}@example.com", "template": "w"}}
        for i in range(2)]}
    assert (await client.post("/api/v1/queue/jobs/batch", json=batch,
                              headers=auth())).status == 201

    admin = {"Authorization": f"Bearer {token()}"}
    resp = await client.get(STATS, headers=admin)
    assert resp.status == 200
    caches = (await resp.json())["caches"]
    verifier = client.app[VERIFIER]
    assert caches["verifiedTokens"]["size"] == verifier.cached_tokens >= 4
    assert caches["verifiedTokens"]["flushable"] is True
    assert caches["validators"]["size"] >= 1 and caches["validators"]["flushable"] is False

    flushed = await client.post(FLUSH, headers=admin)
    assert flushed.status == 200
    # the admin token of these requests was already remembered when the stats were read
    assert (await flushed.json())["flushed"]["verifiedTokens"] == caches["verifiedTokens"][
        "size"]
    assert verifier.cached_tokens == 0
    # every token still works: it is verified in full again
    after = await (await client.get(STATS, headers=admin)).json()
    assert after["caches"]["verifiedTokens"]["size"] == 1


async def test_a_flush_is_in_the_audit_trail(api: Api) -> None:
    assert (await api.client.post(FLUSH, headers=auth())).status == 200
    assert (await api.client.post(FLUSH, headers=auth("user"))).status == 403
    resp = await api.client.get("/api/v1/queue/audit?action=cache.flush", headers=auth())
    entries = (await resp.json())["entries"]
    assert [(e["outcome"], e["role"]) for e in entries] == [("denied", "user"), ("ok", "admin")]
    assert entries[1]["target"] == "verified-tokens"
