"""Configuration: one frozen `Settings` read from the environment (and an optional `.env`).

Everything is validated at start, and every problem is reported at once, one line each, naming the
variable to fix. New features add their fields here rather than reading `os.environ` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import pydantic
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from tickq.engine.limits import ENV_VARS, LimitConfig, limits_from_env
from tickq.errors import ConfigError

Environment = Literal["development", "production", "staging", "test"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

#: URL schemes a database URL may use (`open_store` decides which of them this build can open)
DATABASE_SCHEMES = ("sqlite", "memory", "postgresql", "postgres")

#: what a valid value looks like, shown instead of pydantic's generic wording
_EXPECTED: dict[str, str] = {
    "PORT": "must be a whole number from 1 to 65535",
    "HOST": "must be a host name or IP address to listen on",
    "TICKQ_ENV": "must be one of development, production, staging, test",
    "LOG_LEVEL": "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "LOG_FORMAT": "must be json or text",
    "TICKQ_SCHEDULER_ENABLED": "must be true or false",
    **{var: "must be a number of seconds from 1 to 604800" for var in (
        "TICKQ_RETENTION_INTERVAL_S", "TICKQ_KEY_EXPIRY_INTERVAL_S",
        "TICKQ_TELEMETRY_RETENTION_INTERVAL_S", "TICKQ_HOUSEKEEPING_INTERVAL_S")},
    "TICKQ_VACUUM_PAGES": "must be a whole number of pages from 0 to 1000000",
    "TICKQ_SCHEDULE_SYNC_INTERVAL_S": "must be a number of seconds from 1 to 3600",
    "TICKQ_SCHEDULE_MISFIRE_GRACE_S": "must be a number of seconds from 1 to 86400",
    "TICKQ_SHUTDOWN_GRACE_S": "must be a number of seconds from 0 to 3600",
    "JWT_LEEWAY_S": "must be a number of seconds from 0 to 300",
    "TICKQ_MAX_BODY_BYTES": "must be a whole number of bytes from 1024 to 67108864",
    "API_RATE_LIMIT_ENABLED": "must be true or false",
    **{var: "must be a positive number of requests per second" for var in ENV_VARS},
    "MONITOR_INTERVAL_S": "must be a number of seconds from 1 to 3600",
    **{f"ALERT_THRESHOLD_{q}_QUEUE": "must be a whole number of waiting jobs, 0 or more"
       for q in ("MONEY", "COMM", "BACKGROUND")},
    **{f"ALERT_THRESHOLD_{q}_AGE_MINUTES": "must be a number of minutes above 0"
       for q in ("MONEY", "COMM", "BACKGROUND")},
    **{f"ALERT_THRESHOLD_{q}_FAILURES": "must be a whole number of failed jobs, 0 or more"
       for q in ("MONEY", "COMM", "BACKGROUND")},
    "ALERT_SMS_TO": "must be a phone number in E.164 form, such as +14155550100",
}

#: variables whose value an error message must not repeat (a secret; a PEM spans many lines)
_NOT_ECHOED = frozenset({"JWT_SECRET", "JWT_PUBLIC_KEY", "STRIPE_SECRET_KEY",
                         "STRIPE_WEBHOOK_SECRET", "SOLANA_PRIVATE_KEY", "EMAIL_PASSWORD",
                         "TWILIO_AUTH_TOKEN", "PUSH_API_KEY", "WEBHOOK_SIGNING_SECRET"})

#: an HS256 secret shorter than this is refused outside development (RFC 7518 section 3.2)
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    """The service's configuration. Field docs name the environment variable that sets each."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", case_sensitive=True, env_ignore_empty=True,
        extra="ignore", frozen=True,
    )

    #: PORT: the HTTP port
    port: int = Field(default=3011, ge=1, le=65535, validation_alias="PORT")
    #: HOST: the address the HTTP server binds (loopback unless told otherwise)
    host: str = Field(default="127.0.0.1", min_length=1, validation_alias="HOST")
    #: TICKQ_ENV: development makes a fresh checkout work with nothing configured
    env: Environment = Field(default="development", validation_alias="TICKQ_ENV")
    #: TICKQ_DATA_DIR: where the embedded SQLite journal lives by default
    data_dir: Path = Field(default=Path("tickq-data"), validation_alias="TICKQ_DATA_DIR")
    #: TICKQ_DATABASE_URL: sqlite:///path, memory:// or postgresql://...; default
    #: sqlite:///<data dir>/tickq.db
    database_url: str = Field(default="", validation_alias="TICKQ_DATABASE_URL")
    #: LOG_LEVEL: threshold of the JSON log
    log_level: LogLevel = Field(default="INFO", validation_alias="LOG_LEVEL")
    #: LOG_FORMAT: json (one object a line) or text (for people); unset: text in development
    #: when stderr is a terminal, json otherwise (output that is piped or collected stays
    #: machine-readable)
    log_format: Literal["json", "text"] | None = Field(default=None,
                                                       validation_alias="LOG_FORMAT")
    #: TICKQ_SHUTDOWN_GRACE_S: how long a shutdown lets running jobs finish
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False,
                                    validation_alias="TICKQ_SHUTDOWN_GRACE_S")
    #: RATE_LIMIT_<PROVIDER>: requests per second for that provider's bucket (burst,
    #: concurrency and cooldown keep the defaults of tickq/engine/limits.py)
    rate_limit_stripe: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                            validation_alias="RATE_LIMIT_STRIPE")
    rate_limit_sendgrid: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                              validation_alias="RATE_LIMIT_SENDGRID")
    rate_limit_twilio: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                            validation_alias="RATE_LIMIT_TWILIO")
    rate_limit_solana: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                            validation_alias="RATE_LIMIT_SOLANA")
    rate_limit_square: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                            validation_alias="RATE_LIMIT_SQUARE")
    rate_limit_quickbooks: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                                validation_alias="RATE_LIMIT_QUICKBOOKS")
    rate_limit_internal: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                              validation_alias="RATE_LIMIT_INTERNAL")
    #: JWT_SECRET: the HS256 key API tokens are signed with (at least 32 bytes outside
    #: development). Exactly one of JWT_SECRET and JWT_PUBLIC_KEY verifies tokens; `serve`
    #: refuses to start without either outside development (see `tickq.http.auth`), while
    #: commands that serve no API do not need one.
    jwt_secret: SecretStr | None = Field(default=None, validation_alias="JWT_SECRET")
    #: JWT_PUBLIC_KEY: a PEM public key; RSA keys verify RS256 tokens, EC P-256 keys ES256
    jwt_public_key: str | None = Field(default=None, validation_alias="JWT_PUBLIC_KEY")
    #: JWT_ISSUER: when set, a token's `iss` must equal it
    jwt_issuer: str | None = Field(default=None, min_length=1, validation_alias="JWT_ISSUER")
    #: JWT_AUDIENCE: when set, a token's `aud` must contain it; when unset, a token that names
    #: an audience is refused (it was meant for someone else)
    jwt_audience: str | None = Field(default=None, min_length=1, validation_alias="JWT_AUDIENCE")
    #: JWT_LEEWAY_S: clock skew tolerated on `exp`, `nbf` and `iat`
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300, allow_inf_nan=False,
                                validation_alias="JWT_LEEWAY_S")
    #: TICKQ_MAX_BODY_BYTES: larger request bodies are refused with 413
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                validation_alias="TICKQ_MAX_BODY_BYTES")

    #: API_RATE_LIMIT_ENABLED: per-caller request limits on the HTTP API (see
    #: `tickq.http.ratelimit`); unset means on, except when TICKQ_ENV=test
    api_rate_limit_enabled: bool | None = Field(default=None,
                                                validation_alias="API_RATE_LIMIT_ENABLED")
    #: API_RATE_LIMIT_USER_PER_MIN: requests per minute for user, venue_admin and monitoring
    #: callers, and for anonymous callers (by IP), across all endpoints
    api_rate_limit_user_per_min: int = Field(default=100, ge=1, le=10_000_000,
                                             validation_alias="API_RATE_LIMIT_USER_PER_MIN")
    #: API_RATE_LIMIT_ADMIN_PER_MIN: the same for admins; unset means the user limit
    api_rate_limit_admin_per_min: int | None = Field(
        default=None, ge=1, le=10_000_000, validation_alias="API_RATE_LIMIT_ADMIN_PER_MIN")
    #: API_RATE_LIMIT_SERVICE_PER_MIN: the same for service callers, which enqueue the
    #: platform's work; this one limit also covers their enqueues
    api_rate_limit_service_per_min: int = Field(
        default=600_000, ge=1, le=100_000_000, validation_alias="API_RATE_LIMIT_SERVICE_PER_MIN")
    #: API_RATE_LIMIT_JOBS_PER_MIN: enqueues (POST /api/v1/queue/jobs and /jobs/batch) per
    #: minute per caller, within the caller's overall limit
    api_rate_limit_jobs_per_min: int = Field(default=60, ge=1, le=10_000_000,
                                             validation_alias="API_RATE_LIMIT_JOBS_PER_MIN")
    #: API_RATE_LIMIT_METRICS_PER_MIN: scrapes of /metrics per minute per client IP
    api_rate_limit_metrics_per_min: int = Field(
        default=100, ge=1, le=10_000_000, validation_alias="API_RATE_LIMIT_METRICS_PER_MIN")

    # --- integrations (tickq.processors); each is "not configured" until its key is set --------

    #: STRIPE_SECRET_KEY: the Stripe API key; payments, refunds and payouts need it
    stripe_secret_key: SecretStr | None = Field(default=None, validation_alias="STRIPE_SECRET_KEY")
    #: STRIPE_API_BASE: where Stripe's API is (tests and staging point it elsewhere)
    stripe_api_base: str = Field(default="https://api.stripe.com",
                                 validation_alias="STRIPE_API_BASE")
    #: STRIPE_API_VERSION: the API version requests pin (unset: the version the installed
    #: stripe SDK was built for, which is what its typed parameters describe)
    stripe_api_version: str | None = Field(default=None, min_length=1,
                                           validation_alias="STRIPE_API_VERSION")
    #: STRIPE_WEBHOOK_SECRET: verifies POST /api/v1/queue/webhooks/stripe (whsec_...)
    stripe_webhook_secret: SecretStr | None = Field(default=None,
                                                    validation_alias="STRIPE_WEBHOOK_SECRET")
    #: STRIPE_TIMEOUT_S: how long one Stripe request may take
    stripe_timeout_s: float = Field(default=20.0, gt=0, le=120, allow_inf_nan=False,
                                    validation_alias="STRIPE_TIMEOUT_S")

    #: SOLANA_RPC_URL: the JSON-RPC endpoint NFTs are minted through
    solana_rpc_url: str | None = Field(default=None, min_length=1,
                                       validation_alias="SOLANA_RPC_URL")
    #: SOLANA_COMMITMENT: processed, confirmed or finalized
    solana_commitment: Literal["processed", "confirmed", "finalized"] = Field(
        default="confirmed", validation_alias="SOLANA_COMMITMENT")
    #: SOLANA_KEYPAIR_PATH: the payer's keypair file (the JSON array solana-keygen writes)
    solana_keypair_path: Path | None = Field(default=None, validation_alias="SOLANA_KEYPAIR_PATH")
    #: SOLANA_PRIVATE_KEY: the payer's key as base58 (the spec's variable), instead of a file
    solana_private_key: SecretStr | None = Field(default=None,
                                                 validation_alias="SOLANA_PRIVATE_KEY")
    #: SOLANA_TOKEN_PROGRAM: which SPL program ticket mints use, token or token-2022
    solana_token_program: Literal["token", "token-2022"] = Field(
        default="token", validation_alias="SOLANA_TOKEN_PROGRAM")

    #: EMAIL_HOST: the SMTP server emails go through
    email_host: str | None = Field(default=None, min_length=1, validation_alias="EMAIL_HOST")
    #: EMAIL_PORT: its port (587 with STARTTLS, 465 with implicit TLS, 25 plain)
    email_port: int = Field(default=587, ge=1, le=65535, validation_alias="EMAIL_PORT")
    #: EMAIL_TLS: starttls, tls (implicit, port 465) or none
    email_tls: Literal["starttls", "tls", "none"] = Field(default="starttls",
                                                         validation_alias="EMAIL_TLS")
    #: EMAIL_USER / EMAIL_PASSWORD: SMTP login, when the server asks for one
    email_user: str | None = Field(default=None, min_length=1, validation_alias="EMAIL_USER")
    email_password: SecretStr | None = Field(default=None, validation_alias="EMAIL_PASSWORD")
    #: EMAIL_FROM: the sender of every email that does not name its own
    email_from: str = Field(default="noreply@tickq.invalid", min_length=3,
                            validation_alias="EMAIL_FROM")
    #: ADMIN_EMAIL: where admin alerts go
    admin_email: str | None = Field(default=None, min_length=3, validation_alias="ADMIN_EMAIL")

    #: TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN: SMS through Twilio's Messages API
    twilio_account_sid: str | None = Field(default=None, min_length=1,
                                           validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    #: TWILIO_FROM_NUMBER: the sender of every SMS that does not name its own
    twilio_from_number: str | None = Field(default=None, min_length=1,
                                           validation_alias="TWILIO_FROM_NUMBER")
    #: TWILIO_API_BASE: where Twilio's API is
    twilio_api_base: str = Field(default="https://api.twilio.com",
                                 validation_alias="TWILIO_API_BASE")

    #: PUSH_API_URL / PUSH_API_KEY: the push gateway (FCM-style JSON) and its bearer key
    push_api_url: str | None = Field(default=None, min_length=1, validation_alias="PUSH_API_URL")
    push_api_key: SecretStr | None = Field(default=None, validation_alias="PUSH_API_KEY")

    #: WEBHOOK_SIGNING_SECRET: signs outgoing webhooks and job callbacks (X-Tickq-Signature);
    #: outgoing webhooks are not configured without it
    webhook_signing_secret: SecretStr | None = Field(default=None,
                                                     validation_alias="WEBHOOK_SIGNING_SECRET")
    #: WEBHOOK_TIMEOUT_S: how long one outgoing webhook, SMS, push request or email send may
    #: take
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120, allow_inf_nan=False,
                                     validation_alias="WEBHOOK_TIMEOUT_S")
    #: OUTBOUND_ALLOW_PRIVATE: allow webhooks and callbacks to loopback and private addresses
    #: (off: a job must not be able to reach the service's own network)
    outbound_allow_private: bool = Field(default=False, validation_alias="OUTBOUND_ALLOW_PRIVATE")
    #: PAYMENT_WEBHOOK_URL, REFUND_WEBHOOK_URL, NFT_WEBHOOK_URL, ADMIN_WEBHOOK_URL: where the
    #: platform is told of completed payments, refunds, mints and of alerts
    payment_webhook_url: str | None = Field(default=None, min_length=1,
                                            validation_alias="PAYMENT_WEBHOOK_URL")
    refund_webhook_url: str | None = Field(default=None, min_length=1,
                                           validation_alias="REFUND_WEBHOOK_URL")
    nft_webhook_url: str | None = Field(default=None, min_length=1,
                                        validation_alias="NFT_WEBHOOK_URL")
    admin_webhook_url: str | None = Field(default=None, min_length=1,
                                          validation_alias="ADMIN_WEBHOOK_URL")

    # --- the monitor (tickq.monitoring): thresholds of seed-003 "Alert Thresholds" -------------

    #: MONITOR_INTERVAL_S: how often queue depths, ages and failures are checked
    monitor_interval_s: float = Field(default=30.0, ge=1, le=3600, allow_inf_nan=False,
                                      validation_alias="MONITOR_INTERVAL_S")
    #: ALERT_THRESHOLD_MONEY_QUEUE / _AGE_MINUTES / _FAILURES: the money queue alerts (critical)
    #: above this many due waiting jobs, a job waiting this long, this many failed jobs
    alert_threshold_money_queue: int = Field(default=50, ge=0,
                                             validation_alias="ALERT_THRESHOLD_MONEY_QUEUE")
    alert_threshold_money_age_minutes: float = Field(
        default=10.0, gt=0, allow_inf_nan=False,
        validation_alias="ALERT_THRESHOLD_MONEY_AGE_MINUTES")
    alert_threshold_money_failures: int = Field(
        default=10, ge=0, validation_alias="ALERT_THRESHOLD_MONEY_FAILURES")
    #: ALERT_THRESHOLD_COMM_QUEUE / _AGE_MINUTES / _FAILURES: the same for communication
    #: (warning)
    alert_threshold_comm_queue: int = Field(default=5000, ge=0,
                                            validation_alias="ALERT_THRESHOLD_COMM_QUEUE")
    alert_threshold_comm_age_minutes: float = Field(
        default=30.0, gt=0, allow_inf_nan=False,
        validation_alias="ALERT_THRESHOLD_COMM_AGE_MINUTES")
    alert_threshold_comm_failures: int = Field(
        default=100, ge=0, validation_alias="ALERT_THRESHOLD_COMM_FAILURES")
    #: ALERT_THRESHOLD_BACKGROUND_QUEUE / _AGE_MINUTES / _FAILURES: the same for background
    #: (info)
    alert_threshold_background_queue: int = Field(
        default=50_000, ge=0, validation_alias="ALERT_THRESHOLD_BACKGROUND_QUEUE")
    alert_threshold_background_age_minutes: float = Field(
        default=120.0, gt=0, allow_inf_nan=False,
        validation_alias="ALERT_THRESHOLD_BACKGROUND_AGE_MINUTES")
    alert_threshold_background_failures: int = Field(
        default=1000, ge=0, validation_alias="ALERT_THRESHOLD_BACKGROUND_FAILURES")
    #: ALERT_SMS_TO: the on-call phone critical alerts are texted to (through Twilio, with the
    #: TWILIO_* settings); unset: no SMS alerts
    alert_sms_to: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$",
                                     validation_alias="ALERT_SMS_TO")

    # --- maintenance and cron schedules (tickq.scheduling) --------------------------------------

    #: TICKQ_SCHEDULER_ENABLED: run maintenance and cron schedules in this process (on the
    #: leader, see tickq.scheduling.leader); off leaves retention to the engine's own timer and
    #: fires no cron schedule here
    scheduler_enabled: bool = Field(default=True, validation_alias="TICKQ_SCHEDULER_ENABLED")
    #: TICKQ_RETENTION_INTERVAL_S: how often finished jobs past their retention are removed
    retention_interval_s: float = Field(default=300.0, ge=1, le=604_800, allow_inf_nan=False,
                                        validation_alias="TICKQ_RETENTION_INTERVAL_S")
    #: TICKQ_KEY_EXPIRY_INTERVAL_S: how often ended idempotency-key holds are released
    key_expiry_interval_s: float = Field(default=3600.0, ge=1, le=604_800, allow_inf_nan=False,
                                         validation_alias="TICKQ_KEY_EXPIRY_INTERVAL_S")
    #: TICKQ_TELEMETRY_RETENTION_INTERVAL_S: how often alerts and queue metric snapshots past
    #: their retention (tickq.engine.monitor: 7 and 30 days) are removed
    telemetry_retention_interval_s: float = Field(
        default=3600.0, ge=1, le=604_800, allow_inf_nan=False,
        validation_alias="TICKQ_TELEMETRY_RETENTION_INTERVAL_S")
    #: TICKQ_HOUSEKEEPING_INTERVAL_S: how often the SQLite journal is checkpointed and vacuumed
    housekeeping_interval_s: float = Field(default=3600.0, ge=1, le=604_800,
                                           allow_inf_nan=False,
                                           validation_alias="TICKQ_HOUSEKEEPING_INTERVAL_S")
    #: TICKQ_VACUUM_PAGES: free pages given back to the file system per housekeeping run
    vacuum_pages: int = Field(default=2000, ge=0, le=1_000_000,
                              validation_alias="TICKQ_VACUUM_PAGES")
    #: TICKQ_SCHEDULE_SYNC_INTERVAL_S: how often every cron schedule is read again (to pick up
    #: schedules made on another node, and slots a busy moment let slip)
    schedule_sync_interval_s: float = Field(default=15.0, ge=1, le=3600, allow_inf_nan=False,
                                            validation_alias="TICKQ_SCHEDULE_SYNC_INTERVAL_S")
    #: TICKQ_SCHEDULE_MISFIRE_GRACE_S: a slot this late still counts as on time; older ones
    #: were missed and follow their schedule's missed-tick policy
    schedule_misfire_grace_s: float = Field(default=60.0, ge=1, le=86_400, allow_inf_nan=False,
                                            validation_alias="TICKQ_SCHEDULE_MISFIRE_GRACE_S")

    @model_validator(mode="before")
    @classmethod
    def _default_database_url(cls, data: Any) -> Any:
        # The default depends on another variable, so it is filled in before field validation.
        if isinstance(data, Mapping) and not data.get("TICKQ_DATABASE_URL"):
            data_dir = data.get("TICKQ_DATA_DIR") or cls.model_fields["data_dir"].default
            return {**data, "TICKQ_DATABASE_URL": sqlite_url(Path(str(data_dir)) / "tickq.db")}
        return data

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            level = value.strip().upper()
            level = "WARNING" if level == "WARN" else level
            if level in get_args(LogLevel):
                return level
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _non_empty_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a directory")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in DATABASE_SCHEMES or "://" not in url:
            raise ValueError("must start with sqlite:///, memory:// or postgresql://")
        if scheme == "sqlite" and not url.split("://", 1)[1].lstrip("/"):
            raise ValueError("names no database file (sqlite:///relative/path.db or "
                             "sqlite:////absolute/path.db)")
        return url

    @field_validator("jwt_public_key")
    @classmethod
    def _pem_public_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # A PEM put into one environment line often arrives with literal "\n" escapes.
        pem = value.strip().replace("\\n", "\n")
        public_key_algorithm(pem)  # raises ValueError with the reason
        return pem

    @model_validator(mode="after")
    def _one_token_key(self) -> Settings:
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ValueError("JWT_SECRET and JWT_PUBLIC_KEY are both set; set only one (a "
                             "key verifies one family of algorithms, never both)")
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
        if secret is not None and not self.is_development and (
                len(secret.encode()) < MIN_SECRET_BYTES):
            raise ValueError(f"JWT_SECRET: must be at least {MIN_SECRET_BYTES} bytes when "
                             f"TICKQ_ENV={self.env} (got {len(secret.encode())}); generate one "
                             "with: python -c 'import secrets; print(secrets.token_urlsafe(48))'")
        return self

    @model_validator(mode="after")
    def _durable_in_production(self) -> Settings:
        if self.env == "production" and self.database_kind == "memory":
            raise ValueError("TICKQ_DATABASE_URL: memory:// loses every job on restart and is "
                             "not allowed when TICKQ_ENV=production")
        return self

    def rate_limits(self) -> dict[str, LimitConfig]:
        """The provider limits: the defaults with every RATE_LIMIT_* that is set applied."""
        rates = {var: getattr(self, f"rate_limit_{bucket}") for var, bucket in ENV_VARS.items()}
        return limits_from_env({var: str(rate) for var, rate in rates.items() if rate})

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def jwt_algorithms(self) -> tuple[str, ...]:
        """The only algorithms a token may use: HS256 with a secret, RS256 or ES256 with a public
        key (by the key's type). Never both families, so `alg: none` and HS/RS confusion fail."""
        if self.jwt_public_key is not None:
            return (public_key_algorithm(self.jwt_public_key),)
        return ("HS256",)

    @property
    def api_rate_limit_on(self) -> bool:
        """API_RATE_LIMIT_ENABLED when set; otherwise on everywhere but TICKQ_ENV=test."""
        if self.api_rate_limit_enabled is not None:
            return self.api_rate_limit_enabled
        return self.env != "test"

    @property
    def jwt_configured(self) -> bool:
        """True when tokens can be verified with a configured key (not an ephemeral one)."""
        return self.jwt_secret is not None or self.jwt_public_key is not None

    @property
    def database_kind(self) -> str:
        """sqlite, memory or postgresql."""
        scheme = urlsplit(self.database_url).scheme.lower()
        return "postgresql" if scheme == "postgres" else scheme

    @property
    def database_url_redacted(self) -> str:
        """The database URL with any password masked, for logs."""
        return redact_url(self.database_url)


class _MappingSource(EnvSettingsSource):
    """Environment variables read from a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = dict(env)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in self._mapping.items() if not (self.env_ignore_empty and v == "")}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The validated settings from `env`, or from the process environment and `./.env` when
    `env` is None. Raises `ConfigError` listing every problem, one per line."""
    try:
        if env is None:
            return Settings()
        # `_build_sources` is a BaseSettings.__init__ option the dataclass-style signature hides.
        build: Callable[..., Settings] = Settings
        return build(_build_sources=((_MappingSource(Settings, env),), {}))
    except pydantic.ValidationError as exc:
        raise ConfigError("\n".join(_problem(e) for e in exc.errors())) from None


def _problem(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    var = str(loc[0]) if loc else ""
    if error.get("type") == "value_error":
        message = str(error.get("ctx", {}).get("error", error.get("msg", "")))
        if not var:
            return message  # a model-level check; its message names its variables
    else:
        message = _EXPECTED.get(var) or str(error.get("msg", "is invalid"))
    value = error.get("input")
    shown = var and var not in _NOT_ECHOED and isinstance(value, str | int | float)
    got = f" (got {value!r})" if shown else ""
    return f"{var or 'configuration'}: {message}{got}"


def public_key_algorithm(pem: str) -> str:
    """RS256 for an RSA key of 2048 bits or more, ES256 for an EC P-256 key; ValueError naming
    the problem for anything else."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ValueError("is not a PEM public key (-----BEGIN PUBLIC KEY-----...)") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"an RSA key needs at least 2048 bits (got {key.key_size})")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("must be an RSA (RS256) or EC P-256 (ES256) public key")


def sqlite_url(path: Path) -> str:
    """The `sqlite:///` URL of a file; absolute paths keep their leading slash."""
    return f"sqlite:///{path}"


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


__all__ = ["Environment", "LogLevel", "Settings", "load_settings", "public_key_algorithm",
           "redact_url", "sqlite_url"]
