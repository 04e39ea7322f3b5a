"""The key format: generation, parsing, checksum, and what is refused before any store access."""

from __future__ import annotations

import math
import re
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError, InvalidKeyError
from extapi_kit.keys.format import (
    BASE62,
    KEY_ID_LENGTH,
    SECRET_LENGTH,
    contains_key,
    generate_key,
    generate_key_id,
    parse_key,
    validate_env,
    validate_prefix,
)

envs = st.from_regex(r"[a-z0-9]{1,16}", fullmatch=True)
prefixes = st.from_regex(r"[a-z0-9]{1,16}", fullmatch=True)


@given(prefix=prefixes, env=envs)
def test_round_trip(prefix: str, env: str) -> None:
    """Every generated key parses back to its parts and uses only [A-Za-z0-9_]."""
    key = generate_key(prefix=prefix, env=env)
    assert re.fullmatch(r"[A-Za-z0-9_]+", key)
    parsed = parse_key(key, prefix=prefix)
    assert (parsed.prefix, parsed.env) == (prefix, env)
    assert key.startswith(parsed.display_prefix + "_")
    assert parsed.body == key[:-6]
    assert parsed.secret not in parsed.display_prefix


# Generated once: a key made inside the test would be new external state on every
# replay, and Hypothesis rightly refuses data generation that depends on it.
SAMPLE_KEYS = [generate_key() for _ in range(16)]


@given(data=st.data())
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    """Tampering with any one character (or truncating/extending) fails the format or checksum."""
    key = data.draw(st.sampled_from(SAMPLE_KEYS))
    pos = data.draw(st.integers(0, len(key) - 1))
    replacement = data.draw(st.sampled_from([c for c in BASE62 + "_" if c != key[pos]]))
    tampered = key[:pos] + replacement + key[pos + 1 :]
    with pytest.raises(InvalidKeyError):
        parse_key(tampered)


@given(text=st.text(max_size=400))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Arbitrary input either parses or raises InvalidKeyError, never anything else (A3)."""
    try:
        parse_key(text)
    except InvalidKeyError as exc:
        assert str(exc).startswith("malformed key")  # a fixed message, never the input


@pytest.mark.parametrize(
    "make",
    [
        lambda k: "x" * 10_240,
        lambda k: k[:20] + "\x00" + k[21:],
        lambda k: k.replace("xk_", "zz_", 1),
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
        lambda k: k.replace("_", "__", 1),
        lambda k: k[:10] + "é" + k[11:],
        lambda k: k + "_",
        lambda k: " " + k,
        lambda k: "",
        lambda k: k.encode("ascii") + b"\xff",
    ],
    ids=[
        "10KB",
        "nul",
        "wrong-prefix",
        "bad-checksum",
        "double-separator",
        "non-ascii",
        "trailing-sep",
        "space",
        "empty",
        "bytes-non-ascii",
    ],
)
def test_malformed_keys_are_refused(make: object) -> None:
    """Long, NUL, non-ASCII, wrong-prefix, bad-checksum and doubled-separator keys fail (A3)."""
    key = generate_key()
    bad = make(key)  # type: ignore[operator]
    with pytest.raises(InvalidKeyError) as info:
        parse_key(bad)
    assert key not in str(info.value)


def test_bytes_input_parses() -> None:
    """An ASCII bytes key parses like its text form."""
    key = generate_key(env="test")
    assert parse_key(key.encode()).env == "test"


def test_key_id_is_unguessable_and_secret_has_256_bits() -> None:
    """Key ids carry >= 128 random bits and secrets >= 256 bits (the A2 timing property)."""
    assert KEY_ID_LENGTH * math.log2(62) >= 128
    assert SECRET_LENGTH * math.log2(62) >= 256
    ids = {generate_key_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == KEY_ID_LENGTH for i in ids)


def test_prefix_and_env_validation() -> None:
    """Prefixes and environments are limited to 1-16 of [a-z0-9]."""
    assert validate_prefix("acme") == "acme"
    assert validate_env("live") == "live"
    for bad in ("", "A", "a_b", "x" * 17, "é"):
        with pytest.raises(ConfigurationError):
            validate_prefix(bad)
        with pytest.raises(ConfigurationError):
            validate_env(bad)


def test_max_length_is_configurable() -> None:
    """A key longer than max_length is refused even when otherwise valid."""
    key = generate_key()
    with pytest.raises(InvalidKeyError):
        parse_key(key, max_length=len(key) - 1)
    assert parse_key(key, max_length=len(key)).key_id


def test_parsed_repr_hides_secret() -> None:
    """The repr of a parsed key shows only the display prefix (A10)."""
    key = generate_key()
    parsed = parse_key(key)
    assert parsed.secret not in repr(parsed)
    assert parsed.display_prefix in repr(parsed)


wrappers = st.sampled_from(
    ["{k}", "Bearer {k}", " {k} ", "{k};", "{k};x=1", "foo_{k}", "x{k}y", "[{k}]", "{k}abc"]
)


@given(prefix=prefixes, env=envs, wrap=wrappers, before=st.text(max_size=12))
def test_contains_key_finds_a_key_in_any_wrapping(
    prefix: str, env: str, wrap: str, before: str
) -> None:
    """A17: contains_key finds a key of any prefix wrapped in anything, percent-encoded or not."""
    key = generate_key(prefix=prefix, env=env)
    text = before + wrap.format(k=key)
    assert contains_key(text)
    assert contains_key(quote(text, safe=""))
    assert contains_key(quote(quote(text, safe=""), safe=""))


@given(st.text(alphabet=BASE62 + "_-. %;", max_size=300))
def test_contains_key_ignores_text_without_a_valid_checksum(text: str) -> None:
    """A17: text with no well-formed key (checksum included) is not taken for one."""
    assert not contains_key(text.replace("_", "-"))  # a key needs its "_" separators
    key = generate_key()
    assert not contains_key(text + key[:-1] + ("A" if key[-1] != "A" else "B"))
