"""Helpers of the dashboard tests: signing in through the form, reading the CSRF token."""

from __future__ import annotations

import re
from typing import Any

from httpkit import Api, token

DASH = "/dashboard"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(api: Api, role: str = "admin", tenant: str = "t1", user: str = "u1",
                  **more: Any) -> str:
    """Sign the test client in with a fresh token; returns the session's CSRF token."""
    resp = await api.client.post(f"{DASH}/login", data={"token": token(role, tenant, user,
                                                                        **more)},
                                 allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return await csrf_of(api)


async def csrf_of(api: Api) -> str:
    page = await api.client.get(DASH)
    assert page.status == 200, await page.text()
    found = _CSRF.search(await page.text())
    assert found is not None
    return found.group(1)


async def post(api: Api, path: str, csrf: str | None, **fields: Any) -> Any:
    """POST a dashboard form (without following the redirect)."""
    data: dict[str, Any] = dict(fields)
    if csrf is not None:
        data["csrf"] = csrf
    return await api.client.post(f"{DASH}{path}", data=data, allow_redirects=False)
