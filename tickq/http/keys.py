"""Typed application and request state: handlers reach the engine, the settings, the token
verifier, the caller and the request id through these keys."""

from __future__ import annotations

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.http.auth import Principal, TokenVerifier
from tickq.metrics import Metrics
from tickq.processors import Integrations
from tickq.settings import Settings

ENGINE = web.AppKey("tickq.engine", Engine)
SETTINGS = web.AppKey("tickq.settings", Settings)
VERIFIER = web.AppKey("tickq.verifier", TokenVerifier)
METRICS = web.AppKey("tickq.metrics", Metrics)
INTEGRATIONS = web.AppKey("tickq.integrations", Integrations)

#: the authenticated caller (absent on public routes)
PRINCIPAL = web.RequestKey("tickq.principal", Principal)
#: the request's id, as echoed in `X-Request-ID` and stamped on its log lines
REQUEST_ID = web.RequestKey("tickq.request_id", str)
