"""Token buckets in `tickq.engine.limiter`: the bounds hold for any sequence of calls.

Every test drives the limiter with explicit times from a `FakeClock`; random operation sequences
are replayed against a small model (slots held, cooldown ends, stops) and each bound is checked
over the whole trace.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickq.clock import FakeClock
from tickq.engine.limiter import (
    DEFAULT_LIMITS,
    GRANTED,
    GROUPS,
    Decision,
    LimitConfig,
    RateLimiter,
)

T0 = 1_800_000_000.0
#: float slack for sums of token arithmetic; a real overrun is a whole token
EPS = 1e-6

#: two buckets: "a" shared by a1 and a2 (and usable by its own name), "b" alone
PROVIDERS = ("a", "a1", "a2", "b")
TEST_GROUPS = {"a1": "a", "a2": "a"}

Op = tuple[str, int, float]  # (kind, provider index, amount)


@st.composite
def configs(draw: st.DrawFn) -> LimitConfig:
    return LimitConfig(rate_per_s=draw(st.floats(0.1, 50)), burst=draw(st.integers(1, 8)),
                       max_concurrent=draw(st.integers(1, 4)), cooldown_s=draw(st.floats(0, 3)))


providers = st.integers(0, len(PROVIDERS) - 1)
acquire = st.tuples(st.just("acquire"), providers, st.integers(1, 3).map(float))
release = st.tuples(st.just("release"), providers, st.just(0.0))
# mostly short steps (so buckets run dry), sometimes long idle periods (so they fill up)
advance = st.tuples(st.just("advance"), st.just(0),
                    st.just(0.0) | st.floats(0, 0.5) | st.floats(0, 30))
cooldown = st.tuples(st.just("cooldown"), providers, st.floats(0, 4))
stop = st.tuples(st.just("stop"), st.integers(-1, len(PROVIDERS) - 1), st.just(0.0))
resume = st.tuples(st.just("resume"), st.integers(-1, len(PROVIDERS) - 1), st.just(0.0))

flow_ops = st.lists(st.one_of(acquire, acquire, release, advance), min_size=20, max_size=80)
all_ops = st.lists(st.one_of(acquire, acquire, release, advance, cooldown, stop, resume),
                   min_size=20, max_size=80)


@dataclass
class Trace:
    """What a run did, per bucket, next to what the model expected."""

    limiter: RateLimiter
    clock: FakeClock
    limits: dict[str, LimitConfig]
    grants: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    #: (grants made before the cooldown call, when the cooldown ends) per bucket
    cooldowns: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    until: dict[str, float] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    decisions: list[tuple[str, float, Decision]] = field(default_factory=list)


def run(limits: dict[str, LimitConfig], ops: list[Op], tr: Trace | None = None) -> Trace:
    """Replay `ops` (on a new limiter, or continuing `tr`), checking the model at every step."""
    if tr is None:
        tr = Trace(RateLimiter(limits, TEST_GROUPS), FakeClock(T0), limits)
    lim, clock = tr.limiter, tr.clock
    for kind, i, x in ops:
        now = clock.now()
        provider = PROVIDERS[i] if i >= 0 else None
        bucket = lim.bucket_of(provider) if provider is not None else ""
        if kind == "advance":
            clock.advance(x)
        elif kind == "acquire":
            assert provider is not None
            n = min(int(x), limits[bucket].burst)
            d = lim.try_acquire(provider, now, n)
            tr.decisions.append((bucket, now, d))
            if bucket in tr.stopped:
                assert d.reason == "stopped"
            elif now < tr.until.get(bucket, -math.inf):
                assert d.reason == "cooldown"
            if d.granted:
                tr.grants.setdefault(bucket, []).append((now, n))
                tr.held[bucket] = tr.held.get(bucket, 0) + 1
        elif kind == "release":
            assert provider is not None
            lim.release(provider, now)  # also when nothing is held: must not make room
            tr.held[bucket] = max(0, tr.held.get(bucket, 0) - 1)
        elif kind == "cooldown":
            assert provider is not None
            end = lim.cooldown(provider, now, x)
            expected = max(tr.until.get(bucket, -math.inf),
                           now + max(x, limits[bucket].cooldown_s))
            assert end == expected
            tr.until[bucket] = end
            tr.cooldowns.setdefault(bucket, []).append((len(tr.grants.get(bucket, [])), end))
        elif kind == "stop":
            lim.emergency_stop(provider)
            tr.stopped |= set(limits) if provider is None else {bucket}
        elif kind == "resume":
            lim.resume(provider)
            tr.stopped -= set(limits) if provider is None else {bucket}
        for name, cfg in limits.items():
            in_flight = lim.status(name, clock.now())["in_flight"]
            assert in_flight == tr.held.get(name, 0)
            assert 0 <= in_flight <= cfg.max_concurrent
    return tr


def assert_window_bound(grants: list[tuple[float, int]], cfg: LimitConfig) -> None:
    """Tokens granted in every window [t_i, t_j] between two grants <= burst + rate * width."""
    for i, (start, _) in enumerate(grants):
        total = 0
        for end, n in grants[i:]:
            total += n
            assert total <= cfg.burst + cfg.rate_per_s * (end - start) + EPS, (start, end, total)


# --- the bounds ------------------------------------------------------------------------------


@given(configs(), configs(), flow_ops)
def test_grants_in_any_window_never_exceed_burst_plus_rate(
        a: LimitConfig, b: LimitConfig, ops: list[Op]) -> None:
    limits = {"a": a, "b": b}
    tr = run(limits, ops)
    for bucket, grants in tr.grants.items():
        assert_window_bound(grants, limits[bucket])


@given(configs(), configs(), flow_ops)
def test_in_flight_never_exceeds_max_concurrent(
        a: LimitConfig, b: LimitConfig, ops: list[Op]) -> None:
    # `run` checks in-flight against the model and the cap after every step, including after
    # releases with nothing held (which must not make extra room)
    tr = run({"a": a, "b": b}, ops)
    for bucket, d in ((bk, d) for bk, _, d in tr.decisions if d.reason == "concurrency"):
        assert d.retry_at is None, bucket


@given(configs(), st.lists(st.one_of(acquire, release, advance), max_size=80))
def test_group_members_share_one_budget(cfg: LimitConfig, ops: list[Op]) -> None:
    # only the grouped bucket "a" and its members: each member alone would fit its own bound
    # many times over if the members had separate buckets
    ops = [(k, i % 3, x) for k, i, x in ops]
    tr = run({"a": cfg, "b": cfg}, ops)
    assert set(tr.grants) <= {"a"}
    assert_window_bound(tr.grants.get("a", []), cfg)


def test_group_members_resolve_to_their_bucket() -> None:
    lim = RateLimiter()
    for member, bucket in GROUPS.items():
        assert lim.bucket_of(member) == bucket
        assert lim.config_of(member) == DEFAULT_LIMITS[bucket]
    assert lim.bucket_of("stripe") == "stripe"
    for _ in range(DEFAULT_LIMITS["twilio"].burst):
        provider = ("twilio-sms", "twilio-voice", "twilio-verify")[_ % 3]
        assert lim.try_acquire(provider, T0) is GRANTED
        lim.release(provider, T0)
    assert lim.try_acquire("twilio-verify", T0).reason == "no_tokens"


@given(configs(), configs(), all_ops, cooldown, st.floats(0, 1, exclude_max=True), flow_ops)
def test_nothing_is_granted_during_a_cooldown(
        a: LimitConfig, b: LimitConfig, before: list[Op], signal: Op, u: float,
        after: list[Op]) -> None:
    # `run` asserts that every call inside a known cooldown is refused for "cooldown"
    limits = {"a": a, "b": b}
    tr = run(limits, [*before, ("resume", -1, 0.0), signal])
    provider = PROVIDERS[signal[1]]
    bucket = tr.limiter.bucket_of(provider)
    # the bucket is empty when the cooldown ends: the first token comes 1/rate later (the
    # microsecond keeps the probe clear of float rounding at epoch magnitudes)
    probe = copy.deepcopy(tr.limiter)
    wait = max(0, u / limits[bucket].rate_per_s - 1e-6)
    assert not probe.try_acquire(provider, tr.until[bucket] + wait).granted
    run(limits, after, tr)
    for bucket, calls in tr.cooldowns.items():
        grants = tr.grants.get(bucket, [])
        rate = limits[bucket].rate_per_s
        for made, end in calls:
            later = grants[made:]
            assert all(t >= end for t, _ in later)
            # the bucket was emptied: traffic ramps up from the end at the configured rate
            total = 0
            for t, n in later:
                total += n
                assert total <= rate * (t - end) + EPS


@given(configs(), configs(), all_ops)
def test_emergency_stop_grants_nothing_until_resume(
        a: LimitConfig, b: LimitConfig, ops: list[Op]) -> None:
    tr = run({"a": a, "b": b}, [*ops, ("stop", -1, 0.0), ("acquire", 0, 1.0),
                                ("acquire", 3, 1.0), ("advance", 0, 100.0)])
    lim, now = tr.limiter, tr.clock.now()
    for provider in PROVIDERS:
        d = lim.try_acquire(provider, now)
        assert d == Decision(False, "stopped", None)
        assert lim.ready_at(provider, now) is None
        assert lim.status(provider, now)["wait_s"] == math.inf
    lim.resume()
    for provider in ("a", "b"):
        if lim.status(provider, now)["in_flight"] < tr.limits[provider].max_concurrent:
            assert lim.try_acquire(provider, now).granted


def test_stop_also_covers_providers_seen_later() -> None:
    lim = RateLimiter()
    lim.emergency_stop()
    assert lim.try_acquire("brand-new-provider", T0).reason == "stopped"
    lim.resume()
    assert lim.try_acquire("brand-new-provider", T0).granted
    assert lim.try_acquire("another-new-provider", T0).granted


@given(configs(), configs(), st.lists(st.one_of(acquire, release, advance, cooldown),
                                      max_size=60),
       st.sampled_from(PROVIDERS), st.integers(1, 8), st.lists(st.floats(0, 20), max_size=8))
@settings(max_examples=200)
def test_ready_at_is_the_first_time_a_grant_can_succeed(
        a: LimitConfig, b: LimitConfig, ops: list[Op], provider: str, n: int,
        probes: list[float]) -> None:
    limits = {"a": a, "b": b}
    tr = run(limits, ops)
    lim, now = tr.limiter, tr.clock.now()
    cfg = limits[lim.bucket_of(provider)]
    n = min(n, cfg.burst)
    ready = lim.ready_at(provider, now, n)
    if ready is None:
        assert lim.status(provider, now)["in_flight"] >= cfg.max_concurrent
        return
    assert ready >= now
    assert copy.deepcopy(lim).try_acquire(provider, ready, n).granted
    for t in (ready - 1e-5, *(now + dt for dt in probes)):
        if t >= now and copy.deepcopy(lim).try_acquire(provider, t, n).granted:
            assert t >= ready
    # a refusal for time reasons names the same moment
    d = copy.deepcopy(lim).try_acquire(provider, now, n)
    assert d.granted or d.retry_at == ready


# --- status, reset, release ------------------------------------------------------------------


def test_status_reports_the_bucket() -> None:
    lim = RateLimiter()
    s = lim.status("stripe-refunds", T0)
    assert (s["bucket"], s["tokens"], s["burst"], s["rate_per_s"]) == ("stripe", 50, 50, 25)
    assert (s["in_flight"], s["max_concurrent"], s["cooldown_s"]) == (0, 10, 1.0)
    assert (s["stopped"], s["limited"], s["wait_s"], s["cooldown_left_s"]) == (False, False, 0, 0)
    for _ in range(50):
        assert lim.try_acquire("stripe-charges", T0).granted
        lim.release("stripe-charges", T0)
    s = lim.status("stripe", T0)
    assert s["tokens"] == 0 and s["limited"]
    assert s["wait_s"] == pytest.approx(0.04, abs=1e-5)  # the spec's "request 52 waits 40 ms"
    assert lim.status("stripe", T0 + 1)["tokens"] == pytest.approx(25, abs=1e-4)
    assert lim.status("stripe", T0 + 10)["tokens"] == 50
    assert lim.status("stripe", T0, n=3)["wait_s"] == pytest.approx(0.12, abs=1e-5)
    assert s["decisions"] == {"granted": 50, "no_tokens": 0, "cooldown": 0, "concurrency": 0,
                              "stopped": 0}
    assert lim.cooldown("stripe", T0, 3.0) == T0 + 3
    s = lim.status("stripe", T0 + 1)
    assert s["cooldown_left_s"] == pytest.approx(2) and s["wait_s"] == pytest.approx(2.04, abs=1e-5)


@given(configs(), flow_ops, st.floats(0, 10))
def test_status_is_read_only_and_agrees_with_ready_at(
        cfg: LimitConfig, ops: list[Op], later: float) -> None:
    tr = run({"a": cfg, "b": cfg}, ops)
    lim, now = tr.limiter, tr.clock.now()
    before = copy.deepcopy(lim)
    s = lim.status("a", now + later)
    assert lim.status("a", now + later) == s
    ready = lim.ready_at("a", now + later)
    assert lim.try_acquire("a", now) == before.try_acquire("a", now)
    if ready is not None:
        assert s["wait_s"] == ready - (now + later)
        assert s["limited"] == (ready > now + later)
    assert 0 <= s["tokens"] <= cfg.burst


def test_unknown_providers_are_unlimited_but_honour_cooldown() -> None:
    lim = RateLimiter()
    assert not lim.known("webhook")
    assert all(lim.try_acquire("webhook", T0).granted for _ in range(10_000))
    assert lim.status("webhook", T0)["unlimited"]
    end = lim.cooldown("webhook", T0, 5.0)
    assert end == T0 + 5
    d = lim.try_acquire("webhook", T0 + 1)
    assert d.reason == "cooldown" and d.retry_at is not None and d.retry_at >= end
    assert lim.try_acquire("webhook", d.retry_at).granted


def test_reset_fills_the_bucket_and_keeps_in_flight_and_stop() -> None:
    lim = RateLimiter({"p": LimitConfig(rate_per_s=1, burst=5, max_concurrent=2, cooldown_s=1)},
                      {})
    assert lim.try_acquire("p", T0, 3).granted and lim.try_acquire("p", T0, 2).granted
    lim.cooldown("p", T0, 60)
    lim.reset("p", T0)
    s = lim.status("p", T0)
    assert (s["tokens"], s["cooldown_left_s"], s["in_flight"]) == (5, 0, 2)
    assert lim.try_acquire("p", T0).reason == "concurrency"
    lim.release("p", T0)
    lim.emergency_stop("p")
    lim.reset(None, T0)
    assert lim.try_acquire("p", T0).reason == "stopped"


def test_try_acquire_rejects_an_impossible_n() -> None:
    lim = RateLimiter()
    with pytest.raises(ValueError, match="burst"):
        lim.try_acquire("twilio", T0, 11)
    with pytest.raises(ValueError, match="at least 1"):
        lim.try_acquire("twilio", T0, 0)


def test_on_decision_sees_every_decision() -> None:
    seen: list[tuple[str, Decision]] = []
    lim = RateLimiter(on_decision=lambda bucket, d: seen.append((bucket, d)))
    lim.emergency_stop("square")
    lim.try_acquire("stripe-charges", T0)
    lim.try_acquire("square", T0)
    assert seen == [("stripe", GRANTED), ("square", Decision(False, "stopped"))]
    assert lim.stats["stripe"]["granted"] == 1 and lim.stats["square"]["stopped"] == 1
