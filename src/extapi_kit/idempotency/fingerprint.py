"""Idempotency-Key parsing, request fingerprints and record keys.

draft-ietf-httpapi-idempotency-key-header-07 §2.1 defines ``Idempotency-Key`` as an RFC 8941
Item whose value is a String (``Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"``). Many
clients send the bare value (Stripe's SDKs do), so a bare run of visible ASCII is accepted too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["parse_idempotency_key", "record_key", "request_fingerprint"]

# Fast paths: an sf-string without escapes, and a bare token (visible ASCII, no quote).
_PLAIN_SF_STRING = re.compile(rb'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"')
_BARE_TOKEN = re.compile(rb"[\x21\x23-\x7e]+")


def parse_idempotency_key(raw: bytes, *, max_length: int = 255) -> str | None:
    """Return the key carried by one ``Idempotency-Key`` header value, or None if invalid.

    Accepted: an sf-string (``"..."`` with ``\\"`` and ``\\\\`` escapes, printable ASCII inside)
    or a bare token of visible ASCII (``%x21-7E``, no ``"``). Surrounding spaces and tabs are
    ignored. The key must be 1 to ``max_length`` characters long. Parameters after the string
    (``"k";a=1``) are not accepted.

    Args:
        raw: the header value as sent.
        max_length: the longest key accepted (Stripe: 255).
    """
    text = raw.strip(b" \t")
    m = _PLAIN_SF_STRING.fullmatch(text)
    if m is not None:
        key = m.group(1).decode("ascii")
    elif _BARE_TOKEN.fullmatch(text):
        key = text.decode("ascii")
    elif text[:1] == b'"':
        out = bytearray()
        i, end = 1, len(text)
        while i < end:
            ch = text[i]
            if ch == 0x5C:  # backslash: only \" and \\ are valid escapes (RFC 8941 §3.3.3)
                if i + 1 >= end or text[i + 1] not in (0x22, 0x5C):
                    return None
                out.append(text[i + 1])
                i += 2
                continue
            if ch == 0x22:
                if i != end - 1:
                    return None
                break
            if ch < 0x20 or ch > 0x7E:
                return None
            out.append(ch)
            i += 1
        else:
            return None  # no closing quote
        key = out.decode("ascii")
    else:
        return None
    if not key or len(key) > max_length:
        return None
    return key


def _framed(parts: Iterable[bytes]) -> bytes:
    # Length-prefix every field so ("ab", "c") and ("a", "bc") never collide.
    return b"".join(b"%d:%b" % (len(p), p) for p in parts)


def request_fingerprint(
    method: str, path: str, query: bytes, content_type: bytes, body: bytes | Iterable[bytes]
) -> str:
    """Return the SHA-256 hex fingerprint of a request: method, path, query, content type, body.

    Args:
        method: the HTTP method.
        path: the request path.
        query: the raw query string.
        content_type: the raw ``Content-Type`` value (empty if absent).
        body: the body, whole or as chunks.
    """
    chunks = [body] if isinstance(body, bytes | bytearray) else list(body)
    h = hashlib.sha256(
        _framed(
            (
                method.upper().encode("ascii", "replace"),
                path.encode("utf-8", "surrogateescape"),
                query,
                content_type,
            )
        )
    )
    h.update(b"%d:" % sum(len(c) for c in chunks))
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def record_key(principal: str, method: str, route: str, idempotency_key: str) -> str:
    """Return the store key of a record: SHA-256 over the scope and the client's key.

    The scope (principal, method, route) keeps tenants apart (case Z3); hashing keeps the raw key,
    which clients may derive from secrets, out of the store.

    Args:
        principal: who is asking (``"key:<id>"``, ``"owner:<id>"``, ``"ip:<addr>"``).
        method: the HTTP method.
        route: the route template, or the path when no registry is in use.
        idempotency_key: the parsed Idempotency-Key.
    """
    parts = (principal, method.upper(), route, idempotency_key)
    return hashlib.sha256(_framed(p.encode("utf-8", "surrogateescape") for p in parts)).hexdigest()
