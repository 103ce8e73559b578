"""Provider rate limits: the defaults of spec seed-003, the shared groups, and env overrides.

Kept apart from the token buckets in `limiter.py` so settings, the HTTP layer and the breaker
board can read the configuration without pulling in the bucket machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tickq.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """One provider bucket: a refill rate, a burst, a concurrency cap and a cooldown after a 429.

    `cooldown_s` is the shortest pause after a provider says "too many requests"; a longer
    Retry-After from the provider wins.
    """

    #: tokens added per second (the sustained request rate)
    rate_per_s: float
    #: bucket size: how many requests may go out at once after an idle period
    burst: int
    #: calls in flight at most (a slot is taken on grant and given back by `release`)
    max_concurrent: int
    #: minimum pause after the provider throttled us
    cooldown_s: float

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            problems.append(f"rate_per_s must be a positive number, got {self.rate_per_s!r}")
        if self.burst < 1:
            problems.append(f"burst must be at least 1, got {self.burst!r}")
        if self.max_concurrent < 1:
            problems.append(f"max_concurrent must be at least 1, got {self.max_concurrent!r}")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            problems.append(f"cooldown_s must be a number >= 0, got {self.cooldown_s!r}")
        if problems:
            raise ValueError("; ".join(problems))


#: spec seed-003, "RATE LIMIT CONFIGURATION" (cooldownMs converted to seconds)
DEFAULT_LIMITS: Final[Mapping[str, LimitConfig]] = MappingProxyType({
    "stripe": LimitConfig(rate_per_s=25.0, burst=50, max_concurrent=10, cooldown_s=1.0),
    "square": LimitConfig(rate_per_s=8.0, burst=20, max_concurrent=5, cooldown_s=2.0),
    "sendgrid": LimitConfig(rate_per_s=5.0, burst=100, max_concurrent=20, cooldown_s=1.0),
    "twilio": LimitConfig(rate_per_s=1.0, burst=10, max_concurrent=5, cooldown_s=5.0),
    "solana": LimitConfig(rate_per_s=10.0, burst=30, max_concurrent=5, cooldown_s=1.0),
    "quickbooks": LimitConfig(rate_per_s=2.0, burst=10, max_concurrent=3, cooldown_s=3.0),
    "internal": LimitConfig(rate_per_s=100.0, burst=200, max_concurrent=50, cooldown_s=0.1),
})

#: member -> bucket. Members of a group spend one shared budget: the provider counts a charge
#: and a refund against the same account limit, so separate buckets would overrun it.
GROUPS: Final[Mapping[str, str]] = MappingProxyType({
    "stripe-charges": "stripe",
    "stripe-refunds": "stripe",
    "stripe-payouts": "stripe",
    "twilio-sms": "twilio",
    "twilio-voice": "twilio",
    "twilio-verify": "twilio",
    "sendgrid-transactional": "sendgrid",
    "sendgrid-marketing": "sendgrid",
})

#: environment variable -> bucket whose rate_per_s it replaces
ENV_VARS: Final[Mapping[str, str]] = MappingProxyType({
    "RATE_LIMIT_STRIPE": "stripe",
    "RATE_LIMIT_SENDGRID": "sendgrid",
    "RATE_LIMIT_TWILIO": "twilio",
    "RATE_LIMIT_SOLANA": "solana",
    "RATE_LIMIT_SQUARE": "square",
    "RATE_LIMIT_QUICKBOOKS": "quickbooks",
    "RATE_LIMIT_INTERNAL": "internal",
})


def limits_from_env(env: Mapping[str, str],
                    base: Mapping[str, LimitConfig] = DEFAULT_LIMITS) -> dict[str, LimitConfig]:
    """`base` with each set `RATE_LIMIT_<PROVIDER>` (requests per second) as its rate.

    Only the rate changes: burst, concurrency and cooldown keep their defaults, as in the spec.
    A blank value counts as unset, like everywhere else in tickq's settings. Every bad value is
    reported in one `ConfigError`, each naming its variable.
    """
    limits = dict(base)
    problems = []
    for var, bucket in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or not raw.strip():
            continue
        try:
            rate = float(raw.strip())
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            problems.append(f"{var} must be a positive number of requests per second, "
                            f"got {raw!r}")
            continue
        current = limits.get(bucket) or DEFAULT_LIMITS[bucket]
        limits[bucket] = LimitConfig(rate_per_s=rate, burst=current.burst,
                                     max_concurrent=current.max_concurrent,
                                     cooldown_s=current.cooldown_s)
    if problems:
        raise ConfigError("; ".join(problems))
    return limits
