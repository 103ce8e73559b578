"""Property tests for the retry delays in `tickq.engine.backoff`."""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickq.engine.backoff import BackoffKind, BackoffPolicy, ceiling, delay, next_retry_at

HUGE = 2**63 - 1  # the largest attempt count a 64-bit column could hold


class Draw:
    """A random source that returns one fixed draw."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


# Delays finer than a microsecond mean nothing to a scheduler; a zero base is kept as a case.
bases = st.just(0.0) | st.floats(min_value=1e-6, max_value=1e6)
caps = st.floats(min_value=0, max_value=1e7)
factors = st.floats(min_value=1, max_value=10)
attempts = st.integers(min_value=1, max_value=10_000) | st.integers(min_value=1, max_value=HUGE)
draws = st.floats(min_value=0, max_value=1, exclude_max=True)


@st.composite
def policies(draw: st.DrawFn, kind: BackoffKind | None = None,
             jitter: bool | None = None) -> BackoffPolicy:
    return BackoffPolicy(
        kind=draw(st.sampled_from(BackoffKind)) if kind is None else kind,
        base_s=draw(bases), factor=draw(factors), cap_s=draw(caps),
        jitter=draw(st.booleans()) if jitter is None else jitter,
    )


@given(policies(), attempts, draws)
def test_delay_is_within_zero_and_cap(policy: BackoffPolicy, attempt: int, r: float) -> None:
    d = delay(attempt, policy, Draw(r))
    assert 0 <= d <= policy.cap_s
    assert d <= ceiling(attempt, policy)


@given(policies(), attempts, draws)
def test_jittered_delay_is_the_draw_times_the_ceiling(policy: BackoffPolicy, attempt: int,
                                                      r: float) -> None:
    jittered = BackoffPolicy(kind=policy.kind, base_s=policy.base_s, factor=policy.factor,
                             cap_s=policy.cap_s, jitter=True)
    assert delay(attempt, jittered, Draw(r)) == ceiling(attempt, jittered) * r


@given(policies(kind=BackoffKind.EXPONENTIAL), st.integers(min_value=1, max_value=5_000), draws)
def test_exponential_ceiling_never_decreases_with_attempt(policy: BackoffPolicy, attempt: int,
                                                          r: float) -> None:
    assert ceiling(attempt + 1, policy) >= ceiling(attempt, policy)
    # with the same draw the delay never shrinks either, so the expected delay is monotonic too
    assert delay(attempt + 1, policy, Draw(r)) >= delay(attempt, policy, Draw(r))


@given(policies(kind=BackoffKind.EXPONENTIAL), st.integers(min_value=1, max_value=60))
def test_exponential_ceiling_is_base_times_factor_power_capped(policy: BackoffPolicy,
                                                               attempt: int) -> None:
    expected = min(policy.base_s * policy.factor ** (attempt - 1), policy.cap_s)
    assert ceiling(attempt, policy) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(policies(kind=BackoffKind.FIXED, jitter=False), attempts)
def test_fixed_without_jitter_is_exactly_base_capped(policy: BackoffPolicy, attempt: int) -> None:
    assert delay(attempt, policy) == min(policy.base_s, policy.cap_s)


@given(policies(kind=BackoffKind.LINEAR), attempts)
def test_linear_ceiling_is_base_times_attempt_capped(policy: BackoffPolicy, attempt: int) -> None:
    assert ceiling(attempt, policy) == min(policy.base_s * attempt, policy.cap_s)


@given(policies(), st.sampled_from([10**6, 10**9, HUGE, sys.maxsize]), draws)
def test_huge_attempts_never_overflow(policy: BackoffPolicy, attempt: int, r: float) -> None:
    d = delay(attempt, policy, Draw(r))
    assert math.isfinite(d)
    assert 0 <= d <= policy.cap_s
    if policy.kind is BackoffKind.EXPONENTIAL and policy.base_s > 0 and policy.factor >= 1.01:
        assert ceiling(attempt, policy) == policy.cap_s


@given(policies(), attempts, st.floats(min_value=0, max_value=4e9), draws)
def test_next_retry_at_is_now_plus_delay(policy: BackoffPolicy, attempt: int, now: float,
                                         r: float) -> None:
    at = next_retry_at(now, attempt, policy, Draw(r))
    assert at == now + delay(attempt, policy, Draw(r))
    assert now <= at <= now + policy.cap_s


def test_attempt_zero_or_negative_is_treated_as_the_first_retry() -> None:
    policy = BackoffPolicy(kind=BackoffKind.LINEAR, base_s=3.0, cap_s=100.0, jitter=False)
    assert delay(0, policy) == delay(-5, policy) == delay(1, policy) == 3.0


def test_money_schedule_doubles_from_two_seconds_until_the_cap() -> None:
    policy = BackoffPolicy(kind=BackoffKind.EXPONENTIAL, base_s=2.0, factor=2.0, cap_s=3600.0,
                           jitter=False)
    assert [delay(n, policy) for n in range(1, 14)] == [
        2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]


def test_default_rng_is_used_when_none_is_given() -> None:
    policy = BackoffPolicy(base_s=10.0, cap_s=100.0)
    random.seed(7)
    values = {delay(3, policy) for _ in range(50)}
    assert all(0 <= v <= 40.0 for v in values)
    assert len(values) > 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"base_s": -1.0}, "base and cap"),
    ({"cap_s": -1.0}, "base and cap"),
    ({"factor": 0.5}, "factor"),
])
def test_invalid_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]
