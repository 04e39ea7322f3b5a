"""Idempotency-Key parsing (sf-string and bare token), fingerprints and record keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.idempotency import parse_idempotency_key, record_key, request_fingerprint

_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
_VISIBLE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"'),
    min_size=1,
    max_size=255,
)


def _sf_string(value: str) -> bytes:
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b'  "with space"\t', "with space"),
        (b'"esc\\"aped\\\\"', 'esc"aped\\'),
        (b"", None),
        (b'""', None),
        (b"   ", None),
        (b'"unterminated', None),
        (b'"a"b', None),
        (b'"a";p=1', None),
        (b'"bad\\escape"', None),
        (b'"tab\there"', None),
        (b"two words", None),
        (b"caf\xc3\xa9", None),
        (b'"caf\xc3\xa9"', None),
        (b'a"b', None),
        (b"x" * 255, "x" * 255),
        (b"x" * 256, None),
    ],
)
def test_parse_examples(raw: bytes, expected: str | None) -> None:
    """The header parser accepts sf-strings and bare visible-ASCII tokens, rejects the rest (G2)."""
    assert parse_idempotency_key(raw) == expected


@given(_PRINTABLE.filter(lambda s: len(s) <= 255))
def test_sf_string_round_trip(value: str) -> None:
    """Any printable-ASCII key serialised as an RFC 8941 string parses back to itself."""
    assert parse_idempotency_key(_sf_string(value)) == value


@given(_VISIBLE)
def test_bare_token_round_trip(value: str) -> None:
    """Any bare visible-ASCII token without quotes is accepted as-is (compatibility)."""
    assert parse_idempotency_key(value.encode()) == value


@given(st.binary(max_size=300))
def test_parser_never_raises_and_bounds_length(raw: bytes) -> None:
    """Arbitrary bytes never raise; an accepted key is printable ASCII within the length cap."""
    key = parse_idempotency_key(raw, max_length=64)
    if key is not None:
        assert 1 <= len(key) <= 64
        assert all(0x20 <= ord(c) <= 0x7E for c in key)


def test_fingerprint_covers_every_part() -> None:
    """Changing method, path, query, content type or body changes the fingerprint (I3)."""
    base = ("POST", "/orders", b"a=1", b"application/json", b"{}")
    fp = request_fingerprint(*base)
    for i, other in enumerate(["PATCH", "/orders/1", b"a=2", b"text/plain", b"{ }"]):
        changed = list(base)
        changed[i] = other
        assert request_fingerprint(*changed) != fp  # type: ignore[arg-type]


def test_fingerprint_ignores_chunking_but_not_boundaries() -> None:
    """Body chunking does not matter, while shifting bytes between fields does."""
    a = request_fingerprint("POST", "/p", b"", b"", [b"ab", b"c"])
    assert a == request_fingerprint("POST", "/p", b"", b"", b"abc")
    assert request_fingerprint("POST", "/pa", b"", b"", b"") != request_fingerprint(
        "POST", "/p", b"a", b"", b""
    )


def test_record_key_is_scoped_and_hides_the_key() -> None:
    """Record keys differ per principal, method and route, and never contain the raw key (Z3)."""
    k = record_key("key:A", "POST", "/orders", "secret-looking-key")
    assert k != record_key("key:B", "POST", "/orders", "secret-looking-key")
    assert k != record_key("key:A", "PATCH", "/orders", "secret-looking-key")
    assert k != record_key("key:A", "POST", "/orders/{id}", "secret-looking-key")
    assert "secret" not in k and len(k) == 64
