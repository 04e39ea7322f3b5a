"""The one exception tree of extapi_kit.

Every error this library raises on purpose derives from :class:`ExtAPIKitError`::

    ExtAPIKitError
    ├── ConfigurationError (also ValueError)    bad arguments, URLs, rate/size strings, CIDRs
    │   └── InvalidCursorError                  a pagination cursor that is not one of ours
    ├── StoreError                              a backend failed; wraps the cause
    │   └── StoreUnavailableError               the backend is down or past its deadline
    ├── NotFoundError (also LookupError)        a key, endpoint, delivery ... does not exist
    ├── ConflictError                           a write conflicts with the current state
    ├── InvalidKeyError                         a presented API key is malformed or not valid
    ├── PermissionDeniedError (also PermissionError)  an action would exceed the acting key
    ├── UnsafeURLError (also ValueError)        an outbound URL points somewhere it must not (SSRF)
    ├── WebhookVerificationError                an incoming webhook failed signature verification
    └── ProblemError                            carries an RFC 9457 problem to send to the client

Backend errors are always wrapped with ``raise StoreError(...) from exc`` so callers never have to
know which client library a store uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extapi_kit.problems import Problem

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "ExtAPIKitError",
    "InvalidCursorError",
    "InvalidKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProblemError",
    "StoreError",
    "StoreUnavailableError",
    "UnsafeURLError",
    "WebhookVerificationError",
]


class ExtAPIKitError(Exception):
    """Root of every error raised by extapi_kit."""


class ConfigurationError(ExtAPIKitError, ValueError):
    """A configuration value (argument, URL, rate or size string, CIDR) is invalid."""


class InvalidCursorError(ConfigurationError):
    """A pagination cursor is malformed, out of range, or from another query or store."""


class StoreError(ExtAPIKitError):
    """A storage backend failed."""


class StoreUnavailableError(StoreError):
    """A storage backend is unreachable or did not answer within its deadline."""


class NotFoundError(ExtAPIKitError, LookupError):
    """The requested object does not exist."""


class ConflictError(ExtAPIKitError):
    """The operation conflicts with the current state of the object."""


class InvalidKeyError(ExtAPIKitError):
    """A presented API key is malformed, unknown, revoked, expired or wrong."""


class PermissionDeniedError(ExtAPIKitError, PermissionError):
    """An action would give a key more than the key acting holds (no escalation, A14)."""


class UnsafeURLError(ExtAPIKitError, ValueError):
    """An outbound URL resolves to an address that is not allowed (SSRF guard)."""


class WebhookVerificationError(ExtAPIKitError):
    """An incoming webhook's signature, timestamp or headers failed verification."""


class ProblemError(ExtAPIKitError):
    """Raised by handlers to answer the client with an RFC 9457 problem.

    Args:
        problem: the problem to send.
    """

    def __init__(self, problem: Problem, **extra: Any) -> None:
        super().__init__(problem.title)
        self.problem = problem
        self.extra = extra
