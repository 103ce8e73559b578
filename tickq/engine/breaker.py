"""A circuit breaker per provider: stop calling a provider that is down, probe it, come back.

Pure, like the limiter: every call takes `now`. The dispatcher asks `allow(now)` before it runs a
job that needs the provider; a refusal defers the job to `retry_at(now)` without spending an
attempt (DESIGN.md, "Snooze, not fail"). After the call it reports `record(ok, now)`, with `ok`
meaning "the provider answered" (see `is_provider_fault`): a declined card is the customer's
problem, not the provider's, and must not open the breaker.

    closed --(N consecutive failures, or failure rate over the window)--> open
    open --(open_s passed)--> half_open --(half_open_probes successes)--> closed
                                        \\--(a probe failed)--> open

The failure-rate window is a ring of 60 slices of `window_s / 60`, so memory is constant at any
call rate; a call counts for between `window_s - window_s / 60` and `window_s`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple, TypedDict

from tickq.engine.limits import GROUPS
from tickq.errors import (
    CircuitOpen,
    IllegalTransitionError,
    JobTimeoutError,
    PermanentError,
    ProviderError,
    RateLimited,
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_C, _O, _H = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: (from, to) -> when it happens; every other change is illegal
BREAKER_TRANSITIONS: Final[Mapping[tuple[BreakerState, BreakerState], str]] = {
    (_C, _O): "consecutive failures, or the failure rate over the window, reached the limit",
    (_O, _H): "open_s passed: let probes through",
    (_H, _C): "half_open_probes probes succeeded",
    (_H, _O): "a probe failed",
}


def check_breaker_transition(src: BreakerState, dst: BreakerState) -> None:
    """Raise `IllegalTransitionError` unless src -> dst is in `BREAKER_TRANSITIONS`."""
    if (src, dst) not in BREAKER_TRANSITIONS:
        raise IllegalTransitionError(f"a circuit breaker cannot go from {src} to {dst}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    #: this many failures in a row open the breaker
    consecutive_failures: int = 5
    #: the failure-rate window
    window_s: float = 60.0
    #: the failure rate is only trusted over at least this many calls in the window
    min_calls: int = 10
    #: failures / calls at or above this open the breaker
    failure_rate: float = 0.5
    #: how long an open breaker refuses before it lets probes through
    open_s: float = 30.0
    #: probes in flight at most while half-open, and successes needed to close
    half_open_probes: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.consecutive_failures < 1:
            problems.append("consecutive_failures must be at least 1")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            problems.append("window_s must be a positive number")
        if self.min_calls < 1:
            problems.append("min_calls must be at least 1")
        if not 0 < self.failure_rate <= 1:
            problems.append("failure_rate must be in (0, 1]")
        if not (math.isfinite(self.open_s) and self.open_s >= 0):
            problems.append("open_s must be a number >= 0")
        if self.half_open_probes < 1:
            problems.append("half_open_probes must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))


DEFAULT_BREAKER: Final = BreakerConfig()
_SLICES: Final = 60


class BreakerTransition(NamedTuple):
    src: BreakerState
    dst: BreakerState
    at: float


class BreakerStatus(TypedDict):
    state: str
    consecutive_failures: int
    window_calls: int
    window_failures: int
    failure_rate: float
    #: when an open breaker lets probes through (None unless open)
    retry_at: float | None
    open_left_s: float
    probes_in_flight: int
    probe_successes: int
    #: calls refused so far
    rejected: int


class CircuitBreaker:
    """One provider's breaker. Every `allow()` that returns True must be followed by `record`
    or, when the call said nothing about the provider's health, `release`."""

    __slots__ = ("_consecutive", "_cur", "_fail", "_ok", "_opened_at", "_probe_ok", "_probes",
                 "_state", "_step", "_win_fail", "_win_ok", "config", "name", "on_transition",
                 "rejected", "transitions")

    def __init__(self, config: BreakerConfig = DEFAULT_BREAKER, *, name: str = "",
                 on_transition: Callable[[BreakerTransition], None] | None = None,
                 history: int = 100) -> None:
        self.config = config
        self.name = name
        #: called with each state change, for events and metrics
        self.on_transition = on_transition
        #: the latest state changes, oldest first
        self.transitions: deque[BreakerTransition] = deque(maxlen=history)
        self.rejected = 0
        self._state = _C
        self._opened_at = -math.inf
        self._probes = 0
        self._probe_ok = 0
        self._step = config.window_s / _SLICES
        self._clear_window()

    def _clear_window(self) -> None:
        self._consecutive = 0
        self._ok = [0] * _SLICES
        self._fail = [0] * _SLICES
        self._win_ok = self._win_fail = 0
        self._cur = -1  # absolute index of the newest slice

    def _move(self, dst: BreakerState, now: float) -> None:
        src = self._state
        check_breaker_transition(src, dst)
        self._state = dst
        if dst is _H:
            self._probes = self._probe_ok = 0
        else:
            # Closing starts a fresh window; so does opening, so that failures from before the
            # outage cannot trip the breaker again right after it closes.
            self._clear_window()
            if dst is _O:
                self._opened_at = now
        t = BreakerTransition(src, dst, now)
        self.transitions.append(t)
        if self.on_transition is not None:
            self.on_transition(t)

    def _tick(self, now: float) -> BreakerState:
        if self._state is _O and now >= self._opened_at + self.config.open_s:
            self._move(_H, now)
        return self._state

    def _advance(self, now: float) -> None:
        """Drop the slices that fell out of the window as of `now`."""
        idx = int(now // self._step)
        cur = self._cur
        if idx <= cur:
            return  # same slice, or time went back: count in the newest slice
        if idx - cur >= _SLICES:
            self._ok = [0] * _SLICES
            self._fail = [0] * _SLICES
            self._win_ok = self._win_fail = 0
        else:
            ok, fail = self._ok, self._fail
            for i in range(cur + 1, idx + 1):
                pos = i % _SLICES
                self._win_ok -= ok[pos]
                self._win_fail -= fail[pos]
                ok[pos] = fail[pos] = 0
        self._cur = idx

    # --- the calls the dispatcher makes ------------------------------------------------------

    def allow(self, now: float) -> bool:
        """May a call go to the provider now? In half-open, a True takes a probe slot."""
        state = self._state
        if state is _C:
            return True
        if state is _O and self._tick(now) is _O:
            self.rejected += 1
            return False
        if self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        self.rejected += 1
        return False

    def record(self, ok: bool, now: float) -> None:
        """The outcome of an allowed call: ok=False only for a provider fault.

        Ignored while open, and in half-open when no probe is out: such answers come from
        calls that started before the breaker opened and say nothing about the probes.
        """
        state = self._tick(now)
        if state is _C:
            self._advance(now)
            pos = self._cur % _SLICES
            if ok:
                self._ok[pos] += 1
                self._win_ok += 1
                self._consecutive = 0
            else:
                self._fail[pos] += 1
                self._win_fail += 1
                self._consecutive += 1
            cfg = self.config
            calls = self._win_ok + self._win_fail
            if self._consecutive >= cfg.consecutive_failures or (
                    calls >= cfg.min_calls and self._win_fail / calls >= cfg.failure_rate):
                self._move(_O, now)
        elif state is _H and self._probes > 0:  # else: a late answer to a pre-open call
            self._probes -= 1
            if not ok:
                self._move(_O, now)
            else:
                self._probe_ok += 1
                if self._probe_ok >= self.config.half_open_probes:
                    self._move(_C, now)

    def release(self, now: float) -> None:
        """An allowed call ended without a verdict (rate limited, cancelled): free its probe."""
        if self._tick(now) is _H and self._probes > 0:
            self._probes -= 1

    def record_result(self, exc: BaseException | None, now: float) -> None:
        """`record` or `release` from how the call ended (None: it returned normally)."""
        if exc is None:
            self.record(True, now)
        elif isinstance(exc, RateLimited | CircuitOpen | asyncio.CancelledError):
            self.release(now)
        else:
            self.record(not is_provider_fault(exc), now)

    # --- observation -------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        return self._tick(now)

    def retry_at(self, now: float) -> float | None:
        """When an open breaker goes half-open. None when not open: closed allows now, and a
        full half-open depends on its probes, not on time."""
        if self._tick(now) is _O:
            return self._opened_at + self.config.open_s
        return None

    def status(self, now: float) -> BreakerStatus:
        state = self._tick(now)
        if state is _C:
            self._advance(now)
        calls = self._win_ok + self._win_fail
        retry = self.retry_at(now)
        return BreakerStatus(
            state=state.value, consecutive_failures=self._consecutive, window_calls=calls,
            window_failures=self._win_fail,
            failure_rate=self._win_fail / calls if calls else 0.0,
            retry_at=retry, open_left_s=0.0 if retry is None else max(0.0, retry - now),
            probes_in_flight=self._probes if state is _H else 0,
            probe_successes=self._probe_ok if state is _H else 0, rejected=self.rejected,
        )

    def reset(self) -> None:
        """Operator override: closed, counters cleared. Outside the diagram, so not logged as a
        transition; the caller logs who reset it."""
        self._state = _C
        self._probes = self._probe_ok = 0
        self._opened_at = -math.inf
        self._clear_window()


class BreakerBoard:
    """One breaker per bucket: group members share one (a Stripe outage hits charges and
    refunds alike). Breakers are made on first use."""

    __slots__ = ("_breakers", "_config", "_groups", "_overrides", "on_transition")

    def __init__(self, config: BreakerConfig = DEFAULT_BREAKER, *,
                 overrides: Mapping[str, BreakerConfig] | None = None,
                 groups: Mapping[str, str] = GROUPS,
                 on_transition: Callable[[str, BreakerTransition], None] | None = None) -> None:
        self._config = config
        self._overrides = dict(overrides or {})
        self._groups = dict(groups)
        self._breakers: dict[str, CircuitBreaker] = {}
        #: called with (bucket, transition) for every breaker's state change
        self.on_transition = on_transition

    def key_of(self, provider: str) -> str:
        return self._groups.get(provider, provider)

    def get(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            key = self.key_of(provider)
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(self._overrides.get(key, self._config), name=key,
                                         on_transition=lambda t: self._relay(key, t))
                self._breakers[key] = breaker
            if provider != key:
                self._breakers.setdefault(provider, breaker)
        return breaker

    def _relay(self, key: str, t: BreakerTransition) -> None:
        if self.on_transition is not None:
            self.on_transition(key, t)

    def allow(self, provider: str, now: float) -> bool:
        return self.get(provider).allow(now)

    def record(self, provider: str, ok: bool, now: float) -> None:
        self.get(provider).record(ok, now)

    def release(self, provider: str, now: float) -> None:
        self.get(provider).release(now)

    def record_result(self, provider: str, exc: BaseException | None, now: float) -> None:
        self.get(provider).record_result(exc, now)

    def retry_at(self, provider: str, now: float) -> float | None:
        return self.get(provider).retry_at(now)

    def status(self, now: float) -> dict[str, BreakerStatus]:
        """Every breaker used so far, by bucket."""
        unique = {b.name: b for b in self._breakers.values()}
        return {name: unique[name].status(now) for name in sorted(unique)}

    def reset(self, provider: str | None = None) -> None:
        targets = self._breakers.values() if provider is None else [self.get(provider)]
        for b in targets:
            b.reset()


def is_provider_fault(exc: BaseException) -> bool:
    """Does this exception say the provider is unhealthy (count it against the breaker)?

    Timeouts, connection failures and a `ProviderError` with no response or a 5xx: yes. Being
    rate limited means the provider is up and protecting itself; a `PermanentError` (declined
    card, invalid request) and anything else are answers or our own bugs: no.
    """
    if isinstance(exc, RateLimited | CircuitOpen | PermanentError):
        return False
    if isinstance(exc, ProviderError):
        return exc.is_fault
    return isinstance(exc, TimeoutError | JobTimeoutError | ConnectionError | OSError)
