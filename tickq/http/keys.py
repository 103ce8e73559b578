"""Typed application state: route handlers reach the engine and settings through these keys."""

from __future__ import annotations

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.settings import Settings

ENGINE = web.AppKey("tickq.engine", Engine)
SETTINGS = web.AppKey("tickq.settings", Settings)
