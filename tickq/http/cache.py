"""The service's in-process caches (seed-004 lists `/cache/stats` and `/cache/flush` with no
authentication at all; here they are for admins only: the stats reveal traffic and a flush costs
every caller a full token verification).

    GET  /api/v1/queue/cache/stats   sizes of each cache (admin)                          200
    POST /api/v1/queue/cache/flush   forget every verified token (admin)                  200

tickq has two caches: verified bearer tokens (`TokenVerifier`, bounded; a flush makes every token
verify in full again, which is what to do after rotating a key) and the registry's batch
validators (one per job type, built on first use; they hold no data, so they are reported but
never flushed).
"""

from __future__ import annotations

import logging

from aiohttp import web

from tickq.http.access import require
from tickq.http.audit import audited, note
from tickq.http.auth import MAX_CACHED_TOKENS
from tickq.http.keys import ENGINE, VERIFIER
from tickq.http.responses import json_response

log = logging.getLogger(__name__)

PREFIX = "/api/v1/queue"
routes = web.RouteTableDef()


@routes.get(f"{PREFIX}/cache/stats")
@require("admin")
async def cache_stats(request: web.Request) -> web.Response:
    verifier, registry = request.app[VERIFIER], request.app[ENGINE].registry
    return json_response({"caches": {
        "verifiedTokens": {"size": verifier.cached_tokens, "maxSize": MAX_CACHED_TOKENS,
                           "flushable": True},
        "validators": {"size": registry.validator_count, "maxSize": len(registry.types),
                       "flushable": False},
    }})


@routes.post(f"{PREFIX}/cache/flush")
@audited("cache.flush")
@require("admin")
async def cache_flush(request: web.Request) -> web.Response:
    flushed = request.app[VERIFIER].forget_tokens()
    note(request, "verified-tokens", count=flushed)
    return json_response({"flushed": {"verifiedTokens": flushed}})
