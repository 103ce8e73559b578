"""Processors for the platform's job types, one module per integration.

`build_integrations(settings, engine)` makes every integration from the settings and
`Integrations.install` gives the engine a processor for each built-in job type: the real one
when its integration is configured, one that fails the job with the missing setting's name when
it is not. A processor the embedding application registered itself is never replaced.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from tickq.engine.breaker import BreakerState
from tickq.processors.base import Integration, IntegrationStatus, Readiness, not_configured

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)

#: "module:function" of every integration factory; each takes (settings, engine) and returns an
#: `Integration`. Imported when the service builds its integrations, so an embedding application
#: that never asks for them does not import the SDKs.
FACTORIES: tuple[str, ...] = (
    "tickq.processors.sms:integration",
    "tickq.processors.push:integration",
    "tickq.processors.webhooks:integration",
    "tickq.processors.mail:integration",
    "tickq.processors.background:integration",
    "tickq.processors.payments:integration",
    "tickq.processors.nft:integration",
)

Factory = Callable[["Settings", "Engine"], Integration]


def load_factory(path: str) -> Factory:
    module, _, name = path.partition(":")
    fn: Factory = getattr(importlib.import_module(module), name)
    return fn


class Integrations:
    """Every integration of one service, started and closed together."""

    def __init__(self, engine: Engine, integrations: Sequence[Integration]) -> None:
        self.engine = engine
        self._all = tuple(integrations)
        self._started: list[Integration] = []

    def __iter__(self) -> Iterator[Integration]:
        return iter(self._all)

    def get(self, name: str) -> Integration | None:
        return next((i for i in self._all if i.name == name), None)

    def install(self) -> None:
        """Register a processor for every job type an integration serves and the engine has
        no processor for yet."""
        engine = self.engine
        for integration in self._all:
            if integration.configured:
                table = dict(integration.processors())
            else:
                refuse = not_configured(integration.why_not_configured)
                table = dict.fromkeys(integration.job_types, refuse)
            for type_name, fn in table.items():
                if not engine.has_processor(type_name):
                    engine.register(type_name, fn)

    async def start(self) -> None:
        """Start every configured integration; on a failure, close those already started."""
        for integration in self._all:
            if not integration.configured:
                log.info(integration.why_not_configured,
                         extra={"event": "integration_not_configured",
                                "integration": integration.name})
                continue
            try:
                await integration.start()
            except BaseException:
                await integration.close()
                await self.close()
                raise
            self._started.append(integration)

    async def close(self) -> None:
        while self._started:
            integration = self._started.pop()
            try:
                await integration.close()
            except Exception:
                log.exception("closing an integration failed",
                              extra={"event": "integration_close_failed",
                                     "integration": integration.name})

    def status(self) -> dict[str, IntegrationStatus]:
        """Each integration: not configured, degraded (a breaker of one of its providers is
        open or half open) or ready."""
        now = self.engine.clock.now()
        breakers = self.engine.providers.breakers
        out: dict[str, IntegrationStatus] = {}
        for integration in self._all:
            states = {p: breakers.get(p).state(now).value for p in integration.providers}
            if not integration.configured:
                out[integration.name] = IntegrationStatus(
                    integration.name, Readiness.NOT_CONFIGURED, states,
                    integration.why_not_configured)
            elif any(s != BreakerState.CLOSED.value for s in states.values()):
                tripped = sorted(p for p, s in states.items() if s != BreakerState.CLOSED.value)
                out[integration.name] = IntegrationStatus(
                    integration.name, Readiness.DEGRADED, states,
                    f"circuit breaker not closed for {', '.join(tripped)}")
            else:
                out[integration.name] = IntegrationStatus(integration.name, Readiness.READY,
                                                          states)
        return out


def build_integrations(settings: Settings, engine: Engine,
                       factories: Sequence[str] = FACTORIES) -> Integrations:
    """Every integration the settings describe, not yet installed or started."""
    made: list[Integration] = []
    for path in factories:
        made.append(load_factory(path)(settings, engine))
    return Integrations(engine, made)


__all__ = ["FACTORIES", "Integration", "IntegrationStatus", "Integrations", "Readiness",
           "build_integrations", "not_configured"]
