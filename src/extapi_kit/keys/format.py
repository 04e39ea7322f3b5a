"""The API key format: ``<prefix>_<env>_<key_id>_<secret><checksum>``.

Modelled on GitHub's token format (github.blog, 2021-04-05, "Behind GitHub's new authentication
token formats"): a fixed prefix makes leaked keys findable by secret scanners, ``_`` separators
and a ``[A-Za-z0-9_]`` alphabet let a double-click select the whole key, and a CRC32 checksum lets
us reject typos and garbage without touching a store (case A3).

- ``prefix``: configurable, ``[a-z0-9]{1,16}`` (default ``xk``).
- ``env``: ``[a-z0-9]{1,16}`` (``live``, ``test``, ...).
- ``key_id``: 128 random bits in 22 base62 characters; the public lookup handle, safe to log.
- ``secret``: 256 random bits in 43 base62 characters, from :mod:`secrets`; never stored.
- ``checksum``: CRC32 of everything before it, as 6 base62 characters.

``<prefix>_<env>_<key_id>`` is the *display prefix*: safe to show in UIs, logs and audit rows.
"""

from __future__ import annotations

import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from urllib.parse import unquote_plus

from extapi_kit.exceptions import ConfigurationError, InvalidKeyError

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "DEFAULT_PREFIX",
    "KEY_ID_LENGTH",
    "SECRET_LENGTH",
    "ParsedKey",
    "contains_key",
    "generate_key",
    "generate_key_id",
    "is_key_id",
    "parse_key",
    "validate_env",
    "validate_prefix",
]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_PREFIX = "xk"
KEY_ID_LENGTH = 22  # ceil(128 / log2(62))
SECRET_LENGTH = 43  # ceil(256 / log2(62))
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
# GitHub plans for tokens up to 255 characters; anything longer is refused before any parsing.
DEFAULT_MAX_KEY_LENGTH = 255

_SEGMENT_RE = re.compile(r"[a-z0-9]{1,16}")
_B62 = "[0-9A-Za-z]"
_KEY_RE = re.compile(
    rf"([a-z0-9]{{1,16}})_([a-z0-9]{{1,16}})_({_B62}{{{KEY_ID_LENGTH}}})_"
    rf"({_B62}{{{SECRET_LENGTH}}})({_B62}{{{CHECKSUM_LENGTH}}})",
    re.ASCII,
)
_KEY_ID_RE = re.compile(rf"{_B62}{{{KEY_ID_LENGTH}}}", re.ASCII)
# Everything of a key after its prefix, found at every position (the lookahead lets candidates
# overlap, so no junk before a key can hide it); the prefix is then tried at every length.
_KEY_TAIL_RE = re.compile(
    rf"(?=_[a-z0-9]{{1,16}}_{_B62}{{{KEY_ID_LENGTH}}}_{_B62}{{{SECRET_LENGTH}}}"
    rf"({_B62}{{{CHECKSUM_LENGTH}}}))",
    re.ASCII,
)
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_MAX_DECODE_ROUNDS = 3
# The shortest text that can hold a key: a one-letter prefix and environment, the three
# underscores, the id, the secret and the checksum. Percent-decoding only ever shortens a text,
# so a shorter one holds no key in any encoding (most paths and queries stop here).
_MIN_KEY_TEXT = 1 + 1 + 1 + 1 + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH


def _b62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


def _random_b62(width: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(width))


def _checksum(body: str) -> str:
    return _b62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise ConfigurationError.

    Args:
        prefix: ``[a-z0-9]{1,16}``.
    """
    if not isinstance(prefix, str) or not _SEGMENT_RE.fullmatch(prefix):
        raise ConfigurationError(f"invalid key prefix {prefix!r}: use 1-16 of [a-z0-9]")
    return prefix


def validate_env(env: str) -> str:
    """Return ``env`` if it is a valid environment segment, else raise ConfigurationError.

    Args:
        env: ``[a-z0-9]{1,16}``, e.g. ``"live"`` or ``"test"``.
    """
    if not isinstance(env, str) or not _SEGMENT_RE.fullmatch(env):
        raise ConfigurationError(f"invalid key environment {env!r}: use 1-16 of [a-z0-9]")
    return env


def is_key_id(value: str) -> bool:
    """Return whether ``value`` has the shape of a key id (22 base62 characters).

    Args:
        value: the text to test.
    """
    return bool(_KEY_ID_RE.fullmatch(value))


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A syntactically valid key split into its parts.

    Args:
        prefix: the key prefix.
        env: the environment segment.
        key_id: the public key id.
        secret: the secret part (never log or store it).
        body: everything before the checksum (what hashers hash).
    """

    prefix: str
    env: str
    key_id: str
    secret: str
    body: str

    def __repr__(self) -> str:
        return f"ParsedKey(display_prefix={self.display_prefix!r})"

    @property
    def display_prefix(self) -> str:
        """The safe-to-show part: ``<prefix>_<env>_<key_id>``."""
        return f"{self.prefix}_{self.env}_{self.key_id}"


def _holds_key(text: str) -> bool:
    for m in _KEY_TAIL_RE.finditer(text):
        start, checksum = m.start(), m.group(1)
        tail = text[start : m.start(1)]
        first = start
        while first > 0 and start - first < 16 and text[first - 1] in _PREFIX_CHARS:
            first -= 1
        for p in range(first, start):
            if hmac.compare_digest(_checksum(text[p:start] + tail), checksum):
                return True
    return False


def contains_key(text: str) -> bool:
    """Return whether ``text`` holds a well-formed API key of any prefix, anywhere in it.

    The one detector behind both the refusal of keys in the query string and their redaction
    in audit records, so the two cannot disagree (issue 15, A17). It finds a key wrapped in
    anything (``Bearer <key>``, spaces, ``<key>;``, ``foo_<key>``) and behind up to three
    rounds of percent-encoding; the checksum keeps random text from matching (about one in
    2**32 candidates).

    Args:
        text: any text (a query string or part of one, a path, a header value).
    """
    if len(text) < _MIN_KEY_TEXT:
        return False
    for _ in range(_MAX_DECODE_ROUNDS + 1):
        if _holds_key(text):
            return True
        decoded = unquote_plus(text, encoding="latin-1")
        if decoded == text:
            return False
        text = decoded
    return False


def generate_key_id() -> str:
    """Return a fresh random key id (128 bits, 22 base62 characters)."""
    return _random_b62(KEY_ID_LENGTH)


def generate_key(
    *, prefix: str = DEFAULT_PREFIX, env: str = "live", key_id: str | None = None
) -> str:
    """Return a new plaintext key. Show it once; store only its hash.

    Args:
        prefix: the key prefix.
        env: the environment segment.
        key_id: the key id to embed (default: a fresh random one).
    """
    validate_prefix(prefix)
    validate_env(env)
    kid = generate_key_id() if key_id is None else key_id
    if not is_key_id(kid):
        raise ConfigurationError("invalid key id")
    body = f"{prefix}_{env}_{kid}_{_random_b62(SECRET_LENGTH)}"
    return body + _checksum(body)


def parse_key(
    text: str | bytes, *, prefix: str = DEFAULT_PREFIX, max_length: int = DEFAULT_MAX_KEY_LENGTH
) -> ParsedKey:
    """Split and check a presented key without touching any store (microseconds).

    Args:
        text: the presented key.
        prefix: the expected prefix.
        max_length: longer input is refused before any other work.

    Raises:
        InvalidKeyError: for anything that is not a well-formed key with a matching checksum. The
            message never contains the input.
    """
    if len(text) > max_length:
        raise InvalidKeyError("malformed key: too long")
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidKeyError("malformed key: not ascii") from None
    if not isinstance(text, str):
        raise InvalidKeyError("malformed key")
    m = _KEY_RE.fullmatch(text)
    if m is None:
        raise InvalidKeyError("malformed key")
    key_prefix, env, key_id, secret, checksum = m.groups()
    if key_prefix != prefix:
        raise InvalidKeyError("malformed key: wrong prefix")
    body = text[:-CHECKSUM_LENGTH]
    # The checksum is not a secret, but comparing it in constant time costs nothing (A12).
    if not hmac.compare_digest(_checksum(body), checksum):
        raise InvalidKeyError("malformed key: bad checksum")
    return ParsedKey(prefix=key_prefix, env=env, key_id=key_id, secret=secret, body=body)
