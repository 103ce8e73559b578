"""Dashboard sign-in, the session cookie, CSRF and the page headers."""

from __future__ import annotations

import re
import time

from dashkit import DASH, csrf_of, post, sign_in
from httpkit import SECRET, Api, token
from yarl import URL

from tickq.http.auth import mint_token
from tickq.http.dashboard.session import COOKIE


async def test_signing_in_with_a_good_token_sets_a_strict_http_only_cookie(api: Api) -> None:
    resp = await api.client.post(f"{DASH}/login", data={"token": token("admin"),
                                                        "next": "/dashboard/dlq"},
                                 allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/dlq"
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain http in tests; set when the request is https
    assert 0 < int(cookie["max-age"]) <= 600  # the token's lifetime, under the 8 h cap
    page = await api.client.get(DASH)
    assert page.status == 200
    assert "u1 · admin · t1" in await page.text()


async def test_a_bad_or_expired_token_is_refused_and_sets_nothing(api: Api) -> None:
    for bad, why in ((token("admin", secret="x" * 48), "signature"),
                     (mint_token(SECRET, role="admin", tenant_id="t1", user_id="u1", ttl_s=60,
                                now=time.time() - 3600), "expired"), ("not-a-jwt", "not a JWT")):
        resp = await api.client.post(f"{DASH}/login", data={"token": bad},
                                     allow_redirects=False)
        assert resp.status == 401
        assert why in await resp.text()
        assert COOKIE not in resp.cookies
    page = await api.client.get(DASH, allow_redirects=False)
    assert page.status == 303


async def test_signed_out_pages_redirect_to_sign_in_and_posts_answer_401(api: Api) -> None:
    resp = await api.client.get(f"{DASH}/jobs?queue=money", allow_redirects=False)
    assert resp.status == 303
    location = URL(resp.headers["Location"])
    assert location.path == "/dashboard/login"
    assert location.query["next"] == "/dashboard/jobs?queue=money"
    resp = await api.client.post(f"{DASH}/dlq/retry", data={"job": "x"})
    body = await resp.json()
    assert resp.status == 401 and body["code"] == "missing_session" and body["requestId"]
    forged = await api.client.get(DASH, cookies={COOKIE: "e30.AAAA"}, allow_redirects=False)
    assert forged.status == 303


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(api: Api) -> None:
    csrf = await sign_in(api)
    for sent in (None, "wrong", csrf[:-2] + "xx"):
        resp = await post(api, "/queues/communication/pause", sent)
        body = await resp.json()
        assert resp.status == 403 and body["code"] == "csrf_failed", body
        assert set(body) >= {"error", "code", "message", "requestId"}
    assert not api.engine.is_paused("communication")
    resp = await api.client.post(f"{DASH}/queues/communication/pause", data={"csrf": csrf},
                                 headers={"Origin": "https://evil.example"},
                                 allow_redirects=False)
    assert resp.status == 403
    resp = await api.client.post(f"{DASH}/queues/communication/pause", data={"csrf": csrf},
                                 headers={"Sec-Fetch-Site": "cross-site"},
                                 allow_redirects=False)
    assert resp.status == 403
    assert not api.engine.is_paused("communication")
    resp = await post(api, "/queues/communication/pause", csrf)
    assert resp.status == 303 and api.engine.is_paused("communication")


async def test_a_csrf_token_belongs_to_its_session(api: Api) -> None:
    first = await sign_in(api)
    second = await sign_in(api)
    assert first != second
    resp = await post(api, "/queues/communication/pause", first)
    assert resp.status == 403


async def test_signing_out_clears_the_cookie(api: Api) -> None:
    csrf = await sign_in(api)
    resp = await post(api, "/logout", csrf)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
    assert (await api.client.get(DASH, allow_redirects=False)).status == 303


async def test_pages_carry_a_strict_content_security_policy(api: Api) -> None:
    login = await api.client.get(f"{DASH}/login")
    assert login.status == 200 and "Content-Security-Policy" in login.headers
    await sign_in(api)
    for path in ("", "/jobs", "/dlq", "/limits", "/alerts", "/schedules"):
        resp = await api.client.get(f"{DASH}{path}", allow_redirects=False)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'", path
        assert "unsafe-inline" not in csp and directives["frame-ancestors"] == "'none'"
        assert resp.headers["Cache-Control"] == "no-store"
        text = await resp.text()
        assert "<script>" not in text and " style=" not in text and "onclick" not in text


async def test_static_files_are_served_from_the_package(api: Api) -> None:
    for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css")):
        resp = await api.client.get(f"{DASH}/static/{name}")
        assert resp.status == 200 and kind in resp.headers["Content-Type"]
    assert "EventSource" in await (await api.client.get(f"{DASH}/static/dashboard.js")).text()


async def test_an_open_redirect_after_sign_in_is_not_possible(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/dashboard", "/api/v1/queue/jobs"):
        resp = await api.client.post(f"{DASH}/login", data={"token": token(), "next": target},
                                     allow_redirects=False)
        assert resp.headers["Location"] == "/dashboard", target
    assert await csrf_of(api)


async def test_every_dashboard_route_but_sign_in_and_static_files_needs_a_session(
        api: Api) -> None:
    # The dashboard is public to the bearer-token middleware; this is what keeps a route added
    # later from being open to anyone.
    open_paths = {f"{DASH}/login", f"{DASH}/logout"}
    checked = 0
    for route in api.client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
        if not path.startswith(DASH) or path.startswith(f"{DASH}/static") or path in open_paths:
            continue
        if route.method not in ("GET", "POST"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", re.sub(r"\{verb[^}]*\}", "stop", path))
        resp = await api.client.request(route.method, concrete, allow_redirects=False)
        if route.method == "GET":
            assert resp.status == 303, concrete
            assert URL(resp.headers["Location"]).path == f"{DASH}/login", concrete
        else:
            assert resp.status == 401, concrete
        checked += 1
    assert checked >= 15
