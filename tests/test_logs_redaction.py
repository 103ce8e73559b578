"""Personal data and secrets never reach the log output, whoever logs them; ids and ordinary
numbers do."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickq.engine.ids import IdGenerator
from tickq.logs import configure_logging
from tickq.redaction import is_secret_key, luhn_ok, redact_text

log = logging.getLogger("tickq.test.redaction")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing to a buffer through `configure_logging`, restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


# --- what personal data looks like -----------------------------------------------------------

_digits = st.text("0123456789", min_size=1, max_size=1)
_sep = st.sampled_from(["", " ", "-", "."])


@st.composite
def phones(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # international: + and 8 to 15 digits, grouped any way
        country = draw(st.integers(1, 999))
        rest = draw(st.text("0123456789", min_size=8 - len(str(country)),
                            max_size=15 - len(str(country))))
        digits = f"{country}{rest}"
        out, i = "+", 0
        while i < len(digits):
            step = draw(st.integers(1, 4))
            out += digits[i:i + step] + (draw(_sep) if i + step < len(digits) else "")
            i += step
        return out
    area, exchange = draw(st.integers(200, 999)), draw(st.integers(200, 999))
    line = draw(st.integers(0, 9999))
    shape = draw(st.sampled_from(["({a}) {e}-{n}", "{a}-{e}-{n}", "{a}.{e}.{n}",
                                  "{a} {e} {n}"]))
    return shape.format(a=area, e=exchange, n=f"{line:04d}")


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("23456")) + draw(st.text("0123456789", min_size=length - 2,
                                                         max_size=length - 2))
    number = _luhn_complete(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


words = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
personal = st.one_of(st.emails(), phones(), cards())


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pii=personal, before=words, after=words)
def test_generated_personal_data_never_appears_in_the_output(
        captured: io.StringIO, pii: str, before: str, after: str) -> None:
    captured.seek(0)
    captured.truncate()
    log.info("%s %s %s", before, pii, after,
             extra={"detail": f"{before} {pii}", "nested": {"contacts": [pii, {"to": pii}]},
                    "to": pii})
    out = captured.getvalue()
    assert pii not in out
    [line] = lines(captured)
    assert str(line["message"]).startswith(before + " ") and str(line["message"]).endswith(
        " " + after)


_ids = IdGenerator()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(0, 10**12), ratio=st.floats(0, 1e9, allow_nan=False),
       long_number=st.integers(10**12, 10**19 - 1), at=st.integers(0, 2**40))
def test_ids_and_ordinary_numbers_are_kept(captured: io.StringIO, amount: int, ratio: float,
                                           long_number: int, at: int) -> None:
    captured.seek(0)
    captured.truncate()
    job_id = _ids.new(at / 1000)
    digits = str(long_number)
    keep_long = not (13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits))
    text = f"job {job_id} amount {amount} ratio {ratio} ref {digits}"
    log.info(text, extra={"job_id": job_id, "amount": amount, "ref": long_number})
    [line] = lines(captured)
    assert line["job_id"] == job_id and line["amount"] == amount
    message = str(line["message"])
    assert f"job {job_id} amount {amount} ratio {ratio} ref " in message
    assert (digits in message) is keep_long
    assert (line["ref"] == long_number) is keep_long


# --- credentials and secrets -----------------------------------------------------------------


def test_tokens_jwts_and_secret_fields_are_redacted(captured: io.StringIO) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsInJvbGUiOiJhZG1pbiJ9.c2lnbmF0dXJlLXZhbHVl"
    log.warning("auth header was Bearer %s; retrying with password=hunter2", jwt,
                extra={"authorization": f"Bearer {jwt}", "apiKey": "sk_live_abc",
                       "headers": {"X-API-Key": "k-123", "Cookie": "sid=1", "Accept": "json"},
                       "STRIPE_SECRET_KEY": "sk_live_def", "tokensAvailable": 4.5,
                       "body": '{"password": "hunter2", "user": "u1"}'})
    out = captured.getvalue()
    for secret in (jwt, "hunter2", "sk_live_abc", "k-123", "sid=1", "sk_live_def"):
        assert secret not in out
    [line] = lines(captured)
    assert line["authorization"] == line["apiKey"] == line["STRIPE_SECRET_KEY"] == "[secret]"
    assert line["headers"] == {"X-API-Key": "[secret]", "Cookie": "[secret]",
                               "Accept": "json"}
    assert line["tokensAvailable"] == 4.5
    assert line["message"] == "auth header was Bearer [jwt]; retrying with password=[secret]"


def test_a_traceback_is_redacted_too(captured: io.StringIO) -> None:
    try:
        raise ValueError("cannot deliver to fan@example.com with card 4111 1111 1111 1111")
    except ValueError:
        log.exception("delivery failed")
    out = captured.getvalue()
    assert "fan@example.com" not in out and "4111 1111 1111 1111" not in out
    [line] = lines(captured)
    assert "ValueError: cannot deliver to [email] with card [card]" in str(line["exception"])


def test_a_record_is_redacted_for_every_handler_after_the_pipeline(
        captured: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log.info("mail fan@example.com")
    assert "fan@example.com" not in captured.getvalue()
    assert [r.getMessage() for r in caplog.records] == ["mail [email]"]


@pytest.mark.parametrize(("name", "secret"), [
    ("password", True), ("db_password", True), ("jwtSecret", True), ("x-api-key", True),
    ("api_key", True), ("Authorization", True), ("private_key", True), ("accessToken", True),
    ("tokensAvailable", False), ("author", False), ("keyboard", False), ("monkey", False),
    ("job_id", False), ("queue", False),
])
def test_secret_field_names(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def test_text_without_anything_personal_is_unchanged() -> None:
    text = ("engine started at 2026-01-05T09:00:00.123Z on 127.0.0.1:3011 v1.2.3, "
            "loaded=1200 stalled=0 took 12.5 ms; epoch 1800000000123; +12 jobs")
    assert redact_text(text) == text
