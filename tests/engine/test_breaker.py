"""The circuit breaker in `tickq.engine.breaker`, driven with explicit times."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickq.clock import FakeClock
from tickq.engine.breaker import (
    BREAKER_TRANSITIONS,
    BreakerBoard,
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    check_breaker_transition,
    is_provider_fault,
)
from tickq.errors import (
    CircuitOpen,
    IllegalTransitionError,
    JobTimeoutError,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
)

T0 = 1_800_000_000.0
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
NEVER = 10**9  # a threshold no test reaches, to isolate the other trigger


@st.composite
def configs(draw: st.DrawFn, /, **fixed: float) -> BreakerConfig:
    values = {
        "consecutive_failures": draw(st.integers(1, 6)),
        "window_s": draw(st.floats(1, 120)),
        "min_calls": draw(st.integers(1, 12)),
        "failure_rate": draw(st.integers(1, 20)) / 20,
        "open_s": draw(st.floats(0, 60)),
        "half_open_probes": draw(st.integers(1, 4)),
    }
    return BreakerConfig(**{**values, **fixed})  # type: ignore[arg-type]


#: "fails"/"works": a whole call (allow, then record if allowed), as the dispatcher makes it;
#: the bare verbs also exercise records without a matching allow; numbers advance the clock
steps = st.lists(st.one_of(st.sampled_from(["fails", "fails", "works", "works", "allow", "ok",
                                            "fail", "release"]),
                           st.floats(0, 1), st.floats(0, 90)), min_size=30, max_size=150)


def trip(b: CircuitBreaker, now: float) -> None:
    """Open a closed breaker with failures (consecutive, or the rate if that comes first)."""
    for _ in range(b.config.consecutive_failures):
        assert b.allow(now)
        b.record(False, now)
        if b.transitions:
            break
    assert [(t.src, t.dst, t.at) for t in b.transitions] == [(CLOSED, OPEN, now)]


@given(configs(), steps)
@settings(max_examples=300)
def test_state_sequence_is_a_legal_path(cfg: BreakerConfig, ops: list[str | float]) -> None:
    clock = FakeClock(T0)
    seen: list[BreakerTransition] = []
    b = CircuitBreaker(cfg, on_transition=seen.append, history=1000)
    for op in ops:
        now = clock.now()
        if isinstance(op, float):
            clock.advance(op)
        elif op == "allow":
            b.allow(now)
        elif op == "release":
            b.release(now)
        elif op in ("fails", "works"):
            if b.allow(now):
                b.record(op == "works", now)
        else:
            b.record(op == "ok", now)
        # the state is always where the logged path ends
        assert b.state(clock.now()) is (seen[-1].dst if seen else CLOSED)
    state, at = CLOSED, -math.inf
    for t in seen:
        assert (t.src, t.dst) in BREAKER_TRANSITIONS
        assert t.src is state and t.at >= at
        state, at = t.dst, t.at
    assert b.state(clock.now()) is state
    assert list(b.transitions) == seen


@pytest.mark.parametrize("src", list(BreakerState))
@pytest.mark.parametrize("dst", list(BreakerState))
def test_only_the_four_edges_of_the_diagram_are_legal(src: BreakerState,
                                                      dst: BreakerState) -> None:
    if (src, dst) in {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}:
        check_breaker_transition(src, dst)
    else:
        with pytest.raises(IllegalTransitionError):
            check_breaker_transition(src, dst)


@given(configs(open_s=30.0), st.lists(st.floats(0, 30, exclude_max=True), max_size=20))
def test_open_refuses_until_open_s_has_passed(cfg: BreakerConfig, waits: list[float]) -> None:
    b = CircuitBreaker(cfg)
    trip(b, T0)
    for dt in sorted(waits):
        if T0 + dt < T0 + cfg.open_s:
            assert not b.allow(T0 + dt)
            assert b.state(T0 + dt) is OPEN
            assert b.retry_at(T0 + dt) == T0 + cfg.open_s
    assert b.allow(T0 + cfg.open_s)
    assert b.state(T0 + cfg.open_s) is HALF_OPEN
    assert b.status(T0)["rejected"] == sum(T0 + dt < T0 + cfg.open_s for dt in waits)


@given(configs(open_s=5.0), st.lists(st.sampled_from(["allow", "ok", "fail", "release"]),
                                     max_size=60))
@settings(max_examples=300)
def test_half_open_lets_through_at_most_the_probes(cfg: BreakerConfig, ops: list[str]) -> None:
    b = CircuitBreaker(cfg)
    trip(b, T0)
    now = T0 + cfg.open_s
    assert b.state(now) is HALF_OPEN
    in_flight = successes = 0
    for op in ops:
        if op == "allow":
            got = b.allow(now)
            assert got == (in_flight < cfg.half_open_probes)
            in_flight += got
        elif op == "release" and in_flight:
            b.release(now)
            in_flight -= 1
        elif op == "ok" and in_flight:
            b.record(True, now)
            in_flight -= 1
            successes += 1
            if successes == cfg.half_open_probes:
                assert b.state(now) is CLOSED  # enough probes succeeded
                return
        elif op == "fail" and in_flight:
            b.record(False, now)
            # a failed probe reopens it, and the open period starts again
            assert b.state(now) is OPEN and b.retry_at(now) == now + cfg.open_s
            return
        assert b.state(now) is HALF_OPEN
        assert b.status(now)["probes_in_flight"] == in_flight <= cfg.half_open_probes


@given(st.integers(1, 6), st.lists(st.booleans(), max_size=60))
def test_n_consecutive_failures_open_it(n: int, results: list[bool]) -> None:
    b = CircuitBreaker(BreakerConfig(consecutive_failures=n, min_calls=NEVER))
    run = 0
    for i, ok in enumerate(results):
        assert b.allow(T0 + i)
        b.record(ok, T0 + i)
        run = 0 if ok else run + 1
        assert b.state(T0 + i) is (OPEN if run == n else CLOSED)
        if run == n:
            return


@given(st.integers(1, 12), st.integers(1, 20), st.lists(st.booleans(), max_size=60))
def test_failure_rate_over_the_window_opens_it(min_calls: int, twentieths: int,
                                               results: list[bool]) -> None:
    cfg = BreakerConfig(consecutive_failures=NEVER, min_calls=min_calls,
                        failure_rate=twentieths / 20, window_s=60)
    b = CircuitBreaker(cfg)
    fails = 0
    for calls, ok in enumerate(results, start=1):
        now = T0 + calls * 0.1  # all inside one window
        b.record(ok, now)
        fails += not ok
        due = calls >= min_calls and Fraction(fails, calls) >= Fraction(twentieths, 20)
        assert b.state(now) is (OPEN if due else CLOSED)
        if due:
            return


@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=80), st.floats(1, 30))
def test_only_calls_inside_the_window_count(calls: list[tuple[float, bool]],
                                            window_s: float) -> None:
    b = CircuitBreaker(BreakerConfig(consecutive_failures=NEVER, min_calls=NEVER,
                                     window_s=window_s))
    step = window_s / 60
    now, times = T0, []
    for dt, ok in calls:
        now += dt
        b.record(ok, now)
        times.append(now)
        counted = b.status(now)["window_calls"]
        ages = [now - t for t in times]
        # a call counts while younger than window_s - step, never once window_s old
        assert sum(a < window_s - step - 1e-6 for a in ages) <= counted
        assert counted <= sum(a < window_s + 1e-6 for a in ages)


def test_a_closed_breaker_starts_a_fresh_window() -> None:
    cfg = BreakerConfig(consecutive_failures=2, open_s=1, half_open_probes=1)
    b = CircuitBreaker(cfg)
    trip(b, T0)
    assert b.allow(T0 + 1) and not b.allow(T0 + 1)
    b.record(True, T0 + 1)
    assert b.state(T0 + 1) is CLOSED
    b.record(False, T0 + 1)
    assert b.state(T0 + 1) is CLOSED  # the failures before the outage are forgotten
    assert [(t.src, t.dst) for t in b.transitions] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_a_late_answer_does_not_count_as_a_probe() -> None:
    b = CircuitBreaker(BreakerConfig(consecutive_failures=1, open_s=1, half_open_probes=1))
    trip(b, T0)
    b.record(True, T0 + 2)  # a call allowed before the breaker opened, answering late
    assert b.state(T0 + 2) is HALF_OPEN
    assert b.allow(T0 + 2)


def test_reset_closes_and_clears() -> None:
    b = CircuitBreaker(BreakerConfig(consecutive_failures=1))
    trip(b, T0)
    b.reset()
    assert b.state(T0) is CLOSED and b.allow(T0)
    assert b.status(T0)["window_calls"] == 0


@pytest.mark.parametrize("kwargs", [
    {"consecutive_failures": 0}, {"window_s": 0}, {"window_s": math.inf}, {"min_calls": 0},
    {"failure_rate": 0}, {"failure_rate": 1.5}, {"open_s": -1}, {"half_open_probes": 0},
])
def test_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


# --- which exceptions count --------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "fault"), [
    (TimeoutError(), True),  # asyncio.TimeoutError is the same class since Python 3.11
    (JobTimeoutError("processor exceeded 30 s"), True),
    (ConnectionResetError(), True),
    (ConnectionRefusedError(), True),
    (OSError("network unreachable"), True),
    (ProviderError("bad gateway", status=502, provider="stripe"), True),
    (ProviderError("unavailable", status=503), True),
    (ProviderError("no response"), True),
    (ProviderError("conflict", status=409), False),
    (ProviderError("bad request", status=400), False),
    (RateLimited(retry_after=2), False),
    (CircuitOpen(), False),
    (PermanentError("card declined"), False),
    (PermanentError("invalid amount"), False),
    (RetryableError("try again"), False),
    (ValueError("a bug"), False),
    (KeyError("x"), False),
    (asyncio.CancelledError(), False),
])
def test_is_provider_fault(exc: BaseException, fault: bool) -> None:
    assert is_provider_fault(exc) is fault


def test_record_result_counts_faults_and_ignores_throttling() -> None:
    b = CircuitBreaker(BreakerConfig(consecutive_failures=2, open_s=10, half_open_probes=1))
    b.record_result(PermanentError("declined"), T0)
    b.record_result(ProviderError("boom", status=500), T0)
    b.record_result(None, T0)
    b.record_result(TimeoutError(), T0)
    assert b.state(T0) is CLOSED
    b.record_result(ConnectionResetError(), T0)
    assert b.state(T0) is OPEN
    assert b.allow(T0 + 10) and not b.allow(T0 + 10)
    b.record_result(RateLimited(), T0 + 10)  # frees the probe without a verdict
    assert b.state(T0 + 10) is HALF_OPEN and b.allow(T0 + 10)


# --- the board -------------------------------------------------------------------------------


def test_board_shares_one_breaker_per_group_and_relays_transitions() -> None:
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    board = BreakerBoard(BreakerConfig(consecutive_failures=2),
                         overrides={"twilio": BreakerConfig(consecutive_failures=1)},
                         on_transition=lambda key, t: seen.append((key, t.src, t.dst)))
    board.record("stripe-charges", False, T0)
    board.record("stripe-refunds", False, T0)
    assert not board.allow("stripe-payouts", T0) and not board.allow("stripe", T0)
    assert board.allow("square", T0)
    board.record("twilio-sms", False, T0)
    assert board.retry_at("twilio-voice", T0) == T0 + 30
    assert seen == [("stripe", CLOSED, OPEN), ("twilio", CLOSED, OPEN)]
    status = board.status(T0)
    assert list(status) == ["square", "stripe", "twilio"]
    assert status["stripe"]["state"] == "open" and status["stripe"]["open_left_s"] == 30
    board.reset("stripe-charges")
    assert board.allow("stripe", T0) and not board.allow("twilio", T0)
    board.reset()
    assert board.allow("twilio-verify", T0)
