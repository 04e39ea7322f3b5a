"""Standard Webhooks signing (``v1``, HMAC-SHA256) for senders, and verification for receivers.

The signed content is ``f"{msg_id}.{timestamp}.".encode() + body`` and the token is
``"v1," + base64(HMAC-SHA256(key, signed_content))``, where the key is the standard-alphabet base64
decoding of the part of the secret after ``whsec_`` (Standard Webhooks spec v1.0.0, "Signature
scheme"). During a secret rotation the sender puts one token per valid secret in
``webhook-signature``, separated by single spaces, and a receiver accepts any token that matches.

Byte-compatible with the ``standardwebhooks`` package (1.1.0), which the tests prove in both
directions with the spec's test vector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Mapping, Sequence

from extapi_kit.exceptions import ConfigurationError, WebhookVerificationError

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "Webhook",
    "generate_secret",
    "sign",
    "signature_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300
# Svix generates 24 bytes and accepts up to 75; the spec asks for 24-64 random bytes.
_MIN_KEY_BYTES = 24
_MAX_KEY_BYTES = 75
# A rotation sends at most ~11 tokens (Svix keeps 10 old keys); refuse headers far beyond that.
_MAX_TOKENS = 32
_STD_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# webhook-id must be header-safe and must not contain "." (it separates the signed fields).
_MSG_ID = re.compile(r"[!-~]{1,256}")


def generate_secret(nbytes: int = 32) -> str:
    """Return a new ``whsec_`` secret: standard-alphabet base64 of ``nbytes`` random bytes.

    Args:
        nbytes: key length in bytes, 24 to 64 (the Standard Webhooks range).

    Raises:
        ConfigurationError: when ``nbytes`` is outside 24-64.
    """
    if not 24 <= nbytes <= 64:
        raise ConfigurationError(f"secret length must be 24-64 bytes, got {nbytes}")
    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    # The secret itself never appears in an error message.
    if not isinstance(secret, str):
        raise ConfigurationError("webhook secret must be a string")
    encoded = secret.removeprefix(SECRET_PREFIX)
    encoded += "=" * (-len(encoded) % 4)
    # Strict standard alphabet: standardwebhooks drops "-"/"_" silently and derives another key.
    if not _STD_B64.fullmatch(encoded):
        raise ConfigurationError("webhook secret is not standard-alphabet base64 ('whsec_...')")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("webhook secret is not valid base64") from exc
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ConfigurationError(
            f"webhook secret must decode to {_MIN_KEY_BYTES}-{_MAX_KEY_BYTES} bytes, got {len(key)}"
        )
    return key


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature token for one message.

    Args:
        secret: the ``whsec_`` secret.
        msg_id: the ``webhook-id`` (stable across retries; printable ASCII without ``.``).
        timestamp: the ``webhook-timestamp`` of this attempt, integer Unix seconds.
        body: the exact bytes sent as the HTTP body.

    Raises:
        ConfigurationError: for a malformed secret, id or timestamp.
    """
    if not isinstance(msg_id, str) or not _MSG_ID.fullmatch(msg_id) or "." in msg_id:
        raise ConfigurationError("msg_id must be 1-256 printable ASCII characters without '.'")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ConfigurationError("timestamp must be a non-negative integer (Unix seconds)")
    mac = _mac(_secret_key(secret), msg_id, timestamp, bytes(body))
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Return the three Standard Webhooks headers, with one signature per secret.

    Args:
        secrets: the valid secrets, newest first (several during a rotation's grace period).
        msg_id: the ``webhook-id``.
        timestamp: Unix seconds of this attempt (not the event time).
        body: the exact body bytes.

    Raises:
        ConfigurationError: when no secret is given or one is malformed.
    """
    if isinstance(secrets, str):
        secrets = [secrets]
    if not secrets:
        raise ConfigurationError("at least one webhook secret is required to sign")
    tokens = " ".join(sign(s, msg_id, timestamp, body) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": tokens,
    }


def _header(lowered: Mapping[str, str], name: str) -> str:
    # Svix's own SDKs send svix-* headers; accept them as a fallback like its Python verifier does.
    value = lowered.get(f"webhook-{name}")
    if value is None:
        value = lowered.get(f"svix-{name}")
    if not isinstance(value, str) or not value:
        raise WebhookVerificationError("Missing required headers")
    return value


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Verify a received webhook; return quietly when it is authentic, raise otherwise.

    Args:
        payload: the raw request body, exactly as received (never re-serialised JSON).
        headers: the request headers (any mapping; names are matched case-insensitively).
        secret: the endpoint secret, or several (e.g. old and new during a rotation).
        tolerance: how far, in seconds, the timestamp may be from ``now`` in either direction.
        now: the current Unix time (default: ``time.time()``).

    Raises:
        WebhookVerificationError: for missing headers, a malformed or out-of-tolerance timestamp,
            malformed signatures, or no signature matching any secret.
        ConfigurationError: when a configured secret itself is malformed.
    """
    keys = [_secret_key(s) for s in ([secret] if isinstance(secret, str) else secret)]
    if not keys:
        raise ConfigurationError("at least one webhook secret is required to verify")
    try:
        lowered = {str(k).lower(): v for k, v in headers.items()}
    except Exception as exc:  # a hostile Mapping implementation
        raise WebhookVerificationError("Unreadable headers") from exc
    msg_id = _header(lowered, "id")
    raw_ts = _header(lowered, "timestamp").strip()
    signature = _header(lowered, "signature")
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise WebhookVerificationError("Invalid signature headers")
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("Message timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("Message timestamp too new")
    if isinstance(payload, str):
        try:
            body = payload.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WebhookVerificationError("Payload is not valid text") from exc
    else:
        body = bytes(payload)
    try:
        expected = [_mac(key, msg_id, timestamp, body) for key in keys]
    except UnicodeEncodeError as exc:
        raise WebhookVerificationError("Invalid signature headers") from exc
    tokens = signature.split()
    if len(tokens) > _MAX_TOKENS:
        raise WebhookVerificationError("Too many signatures")
    for token in tokens:
        version, sep, encoded = token.partition(",")
        # Other versions (v1a, Ed25519) are skipped, as the spec tells verifiers to do.
        if version != "v1" or not sep or not _STD_B64.fullmatch(encoded):
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for mac in expected:
            if hmac.compare_digest(given, mac):
                return
    raise WebhookVerificationError("No matching signature found")


class Webhook:
    """A signer/verifier bound to one or more secrets (the ``standardwebhooks.Webhook`` shape).

    Args:
        secret: the ``whsec_`` secret, or several (newest first) during a rotation.
        tolerance: the timestamp tolerance in seconds for :meth:`verify`.
    """

    def __init__(self, secret: str | Sequence[str], *, tolerance: int = DEFAULT_TOLERANCE) -> None:
        self._secrets = [secret] if isinstance(secret, str) else list(secret)
        for s in self._secrets:
            _secret_key(s)  # fail at construction, not at the first request
        self._tolerance = tolerance

    def __repr__(self) -> str:
        return f"Webhook(<{len(self._secrets)} secret(s)>, tolerance={self._tolerance})"

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """Return the signed Standard Webhooks headers for a message.

        Args:
            msg_id: the ``webhook-id``.
            timestamp: Unix seconds of this attempt.
            body: the exact body bytes.
        """
        return signature_headers(self._secrets, msg_id, timestamp, body)

    def verify(
        self, payload: bytes | str, headers: Mapping[str, str], *, now: float | None = None
    ) -> None:
        """Verify a received webhook (see :func:`verify`).

        Args:
            payload: the raw body.
            headers: the request headers.
            now: the current Unix time (default: ``time.time()``).
        """
        verify(payload, headers, self._secrets, tolerance=self._tolerance, now=now)
