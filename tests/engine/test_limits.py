"""Provider limits in `tickq.engine.limits`: the spec's table and the env overrides."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickq.engine.limiter import RateLimiter
from tickq.engine.limits import DEFAULT_LIMITS, ENV_VARS, LimitConfig, limits_from_env
from tickq.errors import ConfigError


def test_default_limits_are_the_spec_table() -> None:
    table = {"stripe": (25, 50, 10, 1), "square": (8, 20, 5, 2), "sendgrid": (5, 100, 20, 1),
             "twilio": (1, 10, 5, 5), "solana": (10, 30, 5, 1), "quickbooks": (2, 10, 3, 3),
             "internal": (100, 200, 50, 0.1)}
    assert {k: (c.rate_per_s, c.burst, c.max_concurrent, c.cooldown_s)
            for k, c in DEFAULT_LIMITS.items()} == table


@pytest.mark.parametrize("kwargs", [
    {"rate_per_s": 0}, {"rate_per_s": -1}, {"rate_per_s": math.inf}, {"rate_per_s": math.nan},
    {"burst": 0}, {"max_concurrent": 0}, {"cooldown_s": -0.1}, {"cooldown_s": math.nan},
])
def test_limit_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    base = {"rate_per_s": 1.0, "burst": 1, "max_concurrent": 1, "cooldown_s": 0.0}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LimitConfig(**{**base, **kwargs})  # type: ignore[arg-type]


@given(st.sampled_from(sorted(ENV_VARS)), st.floats(1e-3, 1e6))
def test_env_override_replaces_the_rate_only(var: str, rate: float) -> None:
    limits = limits_from_env({var: f" {rate!r} ", "UNRELATED": "x"})
    bucket = ENV_VARS[var]
    assert limits[bucket].rate_per_s == rate
    old = DEFAULT_LIMITS[bucket]
    assert (limits[bucket].burst, limits[bucket].max_concurrent, limits[bucket].cooldown_s) == (
        old.burst, old.max_concurrent, old.cooldown_s)
    assert {k: v for k, v in limits.items() if k != bucket} == {
        k: v for k, v in DEFAULT_LIMITS.items() if k != bucket}


def test_env_without_overrides_gives_the_defaults() -> None:
    assert limits_from_env({}) == dict(DEFAULT_LIMITS)
    assert limits_from_env({"RATE_LIMIT_STRIPE": "  "}) == dict(DEFAULT_LIMITS)  # blank = unset
    assert limits_from_env({"RATE_LIMIT_STRIPE": "40"})["stripe"].rate_per_s == 40


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "inf", "1e400", "25/s"])
def test_env_override_errors_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=f"RATE_LIMIT_TWILIO.*{value[:2]}"):
        limits_from_env({"RATE_LIMIT_TWILIO": value})


def test_env_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as err:
        limits_from_env({"RATE_LIMIT_SOLANA": "0", "RATE_LIMIT_SQUARE": "fast",
                         "RATE_LIMIT_INTERNAL": "500"})
    assert "RATE_LIMIT_SOLANA" in err.value.message and "RATE_LIMIT_SQUARE" in err.value.message
    assert "RATE_LIMIT_INTERNAL" not in err.value.message


def test_a_bucket_cannot_also_be_a_group_member() -> None:
    with pytest.raises(ValueError, match="stripe-charges"):
        RateLimiter({**DEFAULT_LIMITS, "stripe-charges": DEFAULT_LIMITS["stripe"]})


