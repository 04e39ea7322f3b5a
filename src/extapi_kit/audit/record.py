"""The audit record: one per HTTP call or websocket session, JSON-serialisable.

A record carries what the stack decided (principal, route, rate limit, idempotency, rejection)
and what happened on the wire (status, bytes, latency, disconnects). It never carries a secret:
only the key id and its public display prefix, no header values except ``User-Agent``, and the
query string with sensitive parameter names redacted (case A10). Whatever the name, a query
parameter holding an API key is redacted too, as are path segments and a user agent holding one
(A17): the detector is :func:`~extapi_kit.keys.format.contains_key`, the same one
:class:`~extapi_kit.middleware.api_key.ApiKeyMiddleware` refuses query keys with.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from extapi_kit.keys.format import contains_key

__all__ = [
    "DEFAULT_REDACTED_QUERY",
    "REDACTED",
    "AuditRecord",
    "QueryRedactor",
    "new_record_id",
    "redact_keys",
    "redact_path",
]

REDACTED = "[REDACTED]"
# Query parameter names whose values are never recorded. Names are compared case-insensitively
# with "-" and "_" removed, so "api_key", "API-Key" and "apikey" are one name.
DEFAULT_REDACTED_QUERY: tuple[str, ...] = (
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "authorization",
    "password",
    "secret",
    "signature",
)
# Any name ending in one of these is redacted too ("refresh_token", "client_secret", "x_api_key").
_SENSITIVE_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "signature")


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


class QueryRedactor:
    """Redact the values of sensitive query parameters, keeping the rest of the string as sent.

    Args:
        extra_names: parameter names to redact in addition to :data:`DEFAULT_REDACTED_QUERY`.
    """

    __slots__ = ("_names",)

    def __init__(self, extra_names: Iterable[str] = ()) -> None:
        self._names = frozenset(_norm(n) for n in (*DEFAULT_REDACTED_QUERY, *extra_names))

    def is_sensitive(self, name: str) -> bool:
        """Return whether a parameter name is redacted.

        Args:
            name: the decoded parameter name.
        """
        norm = _norm(name)
        return norm in self._names or norm.endswith(_SENSITIVE_SUFFIXES)

    def redact(self, query_string: bytes | str) -> str:
        """Return the query string with every sensitive value replaced by ``[REDACTED]``.

        Args:
            query_string: the raw query string (``scope["query_string"]``).
        """
        text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
        if not text:
            return ""
        parts = []
        for part in text.split("&"):
            name, _, _value = part.partition("=")
            if contains_key(name):
                parts.append(REDACTED)  # the key is the name itself (``?<key>`` or ``?<key>=1``)
            elif self.is_sensitive(unquote_plus(name)) or contains_key(part):
                parts.append(f"{name}={REDACTED}")
            else:
                parts.append(part)
        return "&".join(parts)


def redact_keys(text: str | None) -> str | None:
    """Return ``text``, or ``[REDACTED]`` when it holds an API key (a user agent, say).

    Args:
        text: the value, or None.
    """
    return REDACTED if text is not None and contains_key(text) else text


def redact_path(path: str) -> str:
    """Return the path with every segment that holds an API key replaced by ``[REDACTED]``.

    Args:
        path: the request path (decoded, as in the ASGI scope).
    """
    if not contains_key(path):
        return path
    return "/".join(REDACTED if contains_key(seg) else seg for seg in path.split("/"))


# Record ids: the hex nanosecond clock, then a random per-process prefix and a counter (cheaper
# than fresh random bytes per record; reseeded in a forked child so workers never share one).
_ID_PREFIX = secrets.token_hex(3)
_id_counter = itertools.count(secrets.randbelow(1 << 24))


def _reseed_record_ids() -> None:
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = secrets.token_hex(3)
    _id_counter = itertools.count(secrets.randbelow(1 << 24))


os.register_at_fork(after_in_child=_reseed_record_ids)


def new_record_id() -> str:
    """Return a fresh unique record id (used by sinks to de-duplicate re-sent records).

    The id starts with the hex nanosecond clock so ids sort roughly by creation time, which keeps
    a unique index on them append-mostly (SQLite inserts stay fast); a per-process random part
    and a counter follow, so two ids from one process never collide and two processes' ids
    differ by their random part.
    """
    return f"{time.time_ns():016x}{_ID_PREFIX}{next(_id_counter) & 0xFFFFFF:06x}"


@dataclass(slots=True)
class AuditRecord:
    """One audited HTTP call or websocket session.

    Args:
        timestamp_us: when the request arrived, microseconds since the epoch (UTC).
        request_id: the request id (echoed to the client as ``X-Request-ID``).
        method: the HTTP method (``"WEBSOCKET"`` for websocket sessions).
        path: the request path.
        route: the route template when the registry matched one, else the path.
        query: the query string with sensitive parameter values redacted.
        status: the response status (500 when the app failed before responding; 499 when the
            client left before any response; 101 for an accepted websocket; 403 for one refused
            before accept).
        latency_ms: wall time from arrival to the last byte sent (or session end).
        key_id: the authenticated key's id, if any.
        key_prefix: its public display prefix (never the secret).
        owner: the key's owner or tenant.
        scopes: the scopes the call used.
        client_ip: the resolved client address.
        user_agent: the ``User-Agent`` header (the only header value recorded).
        bytes_in: request body bytes received (websocket: message bytes).
        bytes_out: response body bytes sent (websocket: message bytes).
        rate_limit: the rate-limit decision (policy, limit, remaining, degraded, ...), if any.
        idempotency: the idempotency outcome, if any.
        rejection: the slug of the problem that rejected the call, if any.
        error: True when the app raised (after the response started: the status is the one sent).
        client_disconnected: True when the client left before the exchange completed.
        resource_ids: resource ids the call touched (type -> id).
        protocol: ``"http"`` or ``"websocket"``.
        extra: free-form values recorded by other layers.
        id: a unique record id, assigned by the writer before the first sink sees the record.
        auth: how the call authenticated: ``"key"``, ``"token"`` (a JWT access token, issue
            19), or None when unauthenticated.
        token_id: the access token's ``jti`` when ``auth`` is ``"token"`` (never the token).
    """

    timestamp_us: int
    request_id: str
    method: str
    path: str
    route: str | None = None
    query: str = ""
    status: int = 0
    latency_ms: float = 0.0
    key_id: str | None = None
    key_prefix: str | None = None
    owner: str | None = None
    scopes: tuple[str, ...] = ()
    client_ip: str | None = None
    user_agent: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    rate_limit: dict[str, Any] | None = None
    idempotency: str | None = None
    rejection: str | None = None
    error: bool = False
    client_disconnected: bool = False
    resource_ids: dict[str, str] = field(default_factory=dict)
    protocol: str = "http"
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    auth: str | None = None
    token_id: str | None = None

    @property
    def timestamp(self) -> datetime:
        """The arrival time as an aware UTC datetime (microsecond precision)."""
        return datetime.fromtimestamp(self.timestamp_us / 1_000_000, tz=UTC)

    @property
    def outcome(self) -> str:
        """Coarse outcome: ``ok``, ``rejected``, ``error``, ``client_error``, ``disconnected``."""
        if self.error:
            return "error"
        if self.client_disconnected:
            return "disconnected"
        if self.rejection is not None:
            return "rejected"
        if self.status >= 500:
            return "error"
        if self.status >= 400:
            return "client_error"
        return "ok"

    def to_dict(self, *, iso: bool = True) -> dict[str, Any]:
        """Return a JSON-serialisable dict.

        Args:
            iso: also include ``timestamp`` as ISO 8601 UTC with microseconds (for humans).
        """
        out: dict[str, Any] = {
            "timestamp_us": self.timestamp_us,
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "query": self.query,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "key_id": self.key_id,
            "key_prefix": self.key_prefix,
            "owner": self.owner,
            "scopes": list(self.scopes),
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "rate_limit": self.rate_limit,
            "idempotency": self.idempotency,
            "rejection": self.rejection,
            "error": self.error,
            "client_disconnected": self.client_disconnected,
            "resource_ids": self.resource_ids,
            "protocol": self.protocol,
            "extra": self.extra,
            "id": self.id,
            "auth": self.auth,
            "token_id": self.token_id,
        }
        if iso:
            out["timestamp"] = _iso(self.timestamp_us)
        return out

    def to_json(self, *, iso: bool = False) -> str:
        """Return compact JSON (non-JSON values in ``extra`` are stringified).

        Args:
            iso: also include the ISO 8601 ``timestamp``.
        """
        return _ENCODER.encode(self.to_dict(iso=iso))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Rebuild a record from :meth:`to_dict` output; unknown members are ignored.

        Args:
            data: the dict.
        """
        values = {f.name: data[f.name] for f in _FIELDS if f.name in data}
        if "timestamp_us" not in values and "timestamp" in data:
            ts = datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
            values["timestamp_us"] = _to_us(ts)
        values["scopes"] = tuple(values.get("scopes") or ())
        values["resource_ids"] = dict(values.get("resource_ids") or {})
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)


_FIELDS = fields(AuditRecord)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _iso(ts_us: int) -> str:
    seconds, micros = divmod(ts_us, 1_000_000)
    base = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return base.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_epoch_us(value: datetime | float | int | None) -> int | None:
    """Convert a datetime (naive = UTC) or epoch seconds to epoch microseconds.

    Args:
        value: the time, or None.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _to_us(value)
    return round(float(value) * 1_000_000)
