"""``StackSettings``: the settings of the middleware stack ``build()`` assembles around a registry.

It lives below the registry (which keeps default settings) and ``build()`` (which reads them), so
both import it and neither imports the other.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DEFAULT",
    "DEFAULT_RATE_LIMIT_STORAGE",
    "DEFAULT_READ",
    "DEFAULT_WRITE",
    "StackSettings",
]

# What build() uses for a setting left out (issue 18 §2: safe when the user writes the least).
# In-process counters: right for one worker; the rate limiter warns when it sees several.
DEFAULT_RATE_LIMIT_STORAGE: Final = "memory://"
DEFAULT_READ: Final = "100/minute"
DEFAULT_WRITE: Final = "20/minute"


class _Default(enum.Enum):
    # An enum member rather than object(): one value across copies and pickles, and type
    # checkers narrow ``x is DEFAULT``.
    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


#: The value of a setting that was not written. ``None`` means "disable this layer" and is
#: only ever the user's choice; ``DEFAULT`` lets ``build()`` pick the safe default.
DEFAULT: Final = _Default.DEFAULT


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Settings of the stack :func:`build` assembles; every keyword of ``build`` overrides one.

    Args:
        key_store: key store URL, ``KeyStore`` or ``KeyService`` (required unless ``auth=False``).
        auth: set False to build without authentication (every route then acts as public).
        rate_limit_storage: rate-limit storage URL or object; left out, in-process storage
            (``"memory://"``); None disables rate limiting.
        audit_sink: audit sink URL or object; left out, no audit layer and a start-up warning;
            None disables the audit layer without the warning.
        idempotency_store: idempotency store URL or object; None disables idempotency.
        usage: a :class:`~extapi_kit.usage.UsageTracker` (shared, e.g. with the admin API), a
            usage store URL or ``UsageStore``; None disables usage counting and quotas.
        key_activity: a :class:`~extapi_kit.analytics.KeyActivity` fed by the audit layer
            (per-key addresses, agents, status classes and refusals); an audit layer is added
            for it when ``audit_sink`` is not set. None (the default) keeps no key analytics.
        body_limit: default request body cap (``"1MiB"``); None disables the layer.
        ip_allow: globally allowed networks.
        ip_deny: globally denied networks.
        trusted_proxies: proxies whose forwarding headers are believed (one shared resolver).
        read: limit of the ``read`` rate class per key (default ``"100/minute"``); an error
            when rate limiting is disabled.
        write: limit of the ``write`` rate class per key (default ``"20/minute"``); an error
            when rate limiting is disabled.
        failure_mode: rate limiter policy when its storage fails (``"open"``/``"closed"``).
        rate_limit_leases: local leases on a ``redis://``/``unix://`` rate-limit storage: a
            block size (units a worker leases at once), ``True`` for the default block, or a
            :class:`~extapi_kit.ratelimit.leases.LeasedRedis`; None (the default) leases
            nothing (docs/rate-limiting.md "Local leases" has the trade-off).
        options: extra keyword arguments per layer, e.g. ``{"audit": {"clock": clock}}``.
        layers: replacement classes per layer name (tests, or your own implementation).
        token_verifier: a :class:`~extapi_kit.oauth.verify.TokenVerifier`: the auth layer then
            also accepts JWT access tokens (issue 19); None: API keys only.
        credits: a :class:`~extapi_kit.credits.CreditLedger` (shared, e.g. with the admin
            API), a credit store URL or ``CreditStore``: requests of keys (or owners) with a
            balance spend their route's ``cost`` from it (issue 20 §2). None (the default): no
            credits layer.
    """

    key_store: Any = None
    auth: bool = True
    rate_limit_storage: Any = DEFAULT
    audit_sink: Any = DEFAULT
    idempotency_store: Any = None
    usage: Any = None
    key_activity: Any = None
    body_limit: int | str | None = "1MiB"
    ip_allow: Sequence[str] = ()
    ip_deny: Sequence[str] = ()
    trusted_proxies: Sequence[str] = ()
    read: Any = DEFAULT
    write: Any = DEFAULT
    failure_mode: str = "open"
    rate_limit_leases: Any = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers: Mapping[str, Any] = field(default_factory=dict)
    token_verifier: Any = None
    credits: Any = None
