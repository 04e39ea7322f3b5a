"""Property tests: size strings and Content-Length handling of the body limit (R1, R3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit import ConfigurationError
from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit._units import parse_size
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware

UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


@given(
    amount=st.integers(0, 10**6),
    unit=st.sampled_from(sorted(UNITS)),
    upper=st.booleans(),
    space=st.sampled_from(["", " ", "  "]),
)
def test_size_strings_multiply_by_their_unit(
    amount: int, unit: str, upper: bool, space: str
) -> None:
    """Sizes: '<n><unit>' (any case, optional spaces) is n times the unit (KiB = 1024)."""
    text = f"{space}{amount}{space}{unit.upper() if upper else unit}{space}"
    assert parse_size(text) == amount * UNITS[unit]


@given(amount=st.integers(0, 10**12))
def test_plain_ints_are_bytes(amount: int) -> None:
    """Sizes: an int is a byte count, and its decimal string is the same size."""
    assert parse_size(amount) == amount == parse_size(str(amount))


@given(text=st.text(max_size=12))
def test_any_text_parses_or_raises_configuration_error(text: str) -> None:
    """Sizes: arbitrary text yields a non-negative int or ConfigurationError, nothing else."""
    try:
        value = parse_size(text)
    except ConfigurationError:
        return
    assert value >= 0


@pytest.mark.parametrize("bad", [-1, "-1KiB", "1.5", "1.0001KiB", "10 XB", True, 1.5, "KiB"])
def test_bad_sizes_are_configuration_errors(bad: object) -> None:
    """Sizes: negative, fractional-byte and unknown-unit sizes refuse to start."""
    with pytest.raises(ConfigurationError):
        parse_size(bad)  # type: ignore[arg-type]


def status_for(headers: list[tuple[bytes, bytes]], limit: int) -> int:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    mw = BodySizeLimitMiddleware(app, max_body=limit)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    coro = mw(scope, receive, send)
    try:
        coro.send(None)
    except StopIteration:
        pass
    status: int = sent[0]["status"]
    return status


@given(length=st.integers(0, 10**30), limit=st.integers(0, 10**7))
def test_declared_length_decides_413_exactly_at_the_limit(length: int, limit: int) -> None:
    """R1: a well-formed Content-Length above the limit is 413, at or below it passes."""
    status = status_for([(b"content-length", str(length).encode())], limit)
    assert status == (413 if length > limit else 200)


@given(value=st.one_of(st.binary(max_size=12), st.from_regex(rb"[0-9 ,\t+-]{0,8}", fullmatch=True)))
def test_non_digit_content_length_is_400(value: bytes) -> None:
    """R3: a Content-Length that is not 1*DIGIT (or a list of one repeated value) is 400."""
    parts = [p.strip(b" \t") for p in value.split(b",")]
    valid = parts[0].isdigit() and all(p == parts[0] for p in parts)
    status = status_for([(b"content-length", value)], 10**30)
    assert status == (200 if valid else 400)
