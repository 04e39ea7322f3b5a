"""extapi_kit: open an internal API to the outside world, securely, in a few lines.

Every name here is re-exported from the module that implements it; the list is locked by
``tests/test_exported_members.py`` so the public API never changes by accident.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and IDEs; at run time they load on first use
    from extapi_kit.audit import AuditRecord, AuditSink
    from extapi_kit.clientip import ClientIPResolver
    from extapi_kit.context import (
        Principal,
        RateLimitInfo,
        RequestContext,
        RouteSettings,
        get_context,
    )
    from extapi_kit.exceptions import (
        ConfigurationError,
        ConflictError,
        ExtAPIKitError,
        InvalidKeyError,
        NotFoundError,
        ProblemError,
        StoreError,
        StoreUnavailableError,
        UnsafeURLError,
        WebhookVerificationError,
    )
    from extapi_kit.idempotency import IdempotencyStore
    from extapi_kit.keys import (
        Argon2Hasher,
        Hasher,
        HmacHasher,
        KeyRecord,
        KeyService,
        KeyStore,
        generate_key,
        parse_key,
    )
    from extapi_kit.middleware.api_key import ApiKeyMiddleware
    from extapi_kit.middleware.audit import AuditMiddleware
    from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
    from extapi_kit.middleware.idempotency import IdempotencyMiddleware
    from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware
    from extapi_kit.middleware.rate_limit import RateLimitMiddleware
    from extapi_kit.middleware.usage import UsageMiddleware
    from extapi_kit.problems import PROBLEMS, Problem
    from extapi_kit.ratelimit import FlatMemoryStorage, RateLimitRule, RatePolicy
    from extapi_kit.routing import (
        CursorCodec,
        ExternalAPI,
        HandlerRequest,
        ListParams,
        Page,
        RouteResolverMiddleware,
        StackSettings,
        Tool,
        paginate,
    )
    from extapi_kit.stores import register_store, store_from_url
    from extapi_kit.usage import UsageStore, UsageTracker
    from extapi_kit.webhooks import (
        RetryPolicy,
        URLGuard,
        WebhookDispatcher,
        WebhookManager,
        WebhookStore,
        generate_secret,
        verify,
    )

__version__ = "0.1.0"

__all__ = [
    "PROBLEMS",
    "ApiKeyMiddleware",
    "Argon2Hasher",
    "AuditMiddleware",
    "AuditRecord",
    "AuditSink",
    "BodySizeLimitMiddleware",
    "ClientIPResolver",
    "ConfigurationError",
    "ConflictError",
    "CursorCodec",
    "ExtAPIKitError",
    "ExternalAPI",
    "FlatMemoryStorage",
    "HandlerRequest",
    "Hasher",
    "HmacHasher",
    "IPAllowlistMiddleware",
    "IdempotencyMiddleware",
    "IdempotencyStore",
    "InvalidKeyError",
    "KeyRecord",
    "KeyService",
    "KeyStore",
    "ListParams",
    "NotFoundError",
    "Page",
    "Principal",
    "Problem",
    "ProblemError",
    "RateLimitInfo",
    "RateLimitMiddleware",
    "RateLimitRule",
    "RatePolicy",
    "RequestContext",
    "RetryPolicy",
    "RouteResolverMiddleware",
    "RouteSettings",
    "StackSettings",
    "StoreError",
    "StoreUnavailableError",
    "Tool",
    "URLGuard",
    "UnsafeURLError",
    "UsageMiddleware",
    "UsageStore",
    "UsageTracker",
    "WebhookDispatcher",
    "WebhookManager",
    "WebhookStore",
    "WebhookVerificationError",
    "__version__",
    "generate_key",
    "generate_secret",
    "get_context",
    "paginate",
    "parse_key",
    "register_store",
    "store_from_url",
    "verify",
]

# name -> the module that implements it: ``import extapi_kit`` stays cheap (the CLI, a worker
# that needs one middleware) and each subpackage loads when one of its names is first used.
_LAZY: dict[str, str] = {
    "ApiKeyMiddleware": "extapi_kit.middleware.api_key",
    "Argon2Hasher": "extapi_kit.keys",
    "AuditMiddleware": "extapi_kit.middleware.audit",
    "AuditRecord": "extapi_kit.audit",
    "AuditSink": "extapi_kit.audit",
    "BodySizeLimitMiddleware": "extapi_kit.middleware.body_limit",
    "ClientIPResolver": "extapi_kit.clientip",
    "ConfigurationError": "extapi_kit.exceptions",
    "ConflictError": "extapi_kit.exceptions",
    "CursorCodec": "extapi_kit.routing",
    "ExtAPIKitError": "extapi_kit.exceptions",
    "ExternalAPI": "extapi_kit.routing",
    "FlatMemoryStorage": "extapi_kit.ratelimit",
    "HandlerRequest": "extapi_kit.routing",
    "Hasher": "extapi_kit.keys",
    "HmacHasher": "extapi_kit.keys",
    "IPAllowlistMiddleware": "extapi_kit.middleware.ip_allowlist",
    "IdempotencyMiddleware": "extapi_kit.middleware.idempotency",
    "IdempotencyStore": "extapi_kit.idempotency",
    "InvalidKeyError": "extapi_kit.exceptions",
    "KeyRecord": "extapi_kit.keys",
    "KeyService": "extapi_kit.keys",
    "KeyStore": "extapi_kit.keys",
    "ListParams": "extapi_kit.routing",
    "NotFoundError": "extapi_kit.exceptions",
    "PROBLEMS": "extapi_kit.problems",
    "Page": "extapi_kit.routing",
    "Principal": "extapi_kit.context",
    "Problem": "extapi_kit.problems",
    "ProblemError": "extapi_kit.exceptions",
    "RateLimitInfo": "extapi_kit.context",
    "RateLimitMiddleware": "extapi_kit.middleware.rate_limit",
    "RateLimitRule": "extapi_kit.ratelimit",
    "RatePolicy": "extapi_kit.ratelimit",
    "RequestContext": "extapi_kit.context",
    "RetryPolicy": "extapi_kit.webhooks",
    "RouteResolverMiddleware": "extapi_kit.routing",
    "RouteSettings": "extapi_kit.context",
    "StackSettings": "extapi_kit.routing",
    "StoreError": "extapi_kit.exceptions",
    "StoreUnavailableError": "extapi_kit.exceptions",
    "Tool": "extapi_kit.routing",
    "URLGuard": "extapi_kit.webhooks",
    "UnsafeURLError": "extapi_kit.exceptions",
    "UsageMiddleware": "extapi_kit.middleware.usage",
    "UsageStore": "extapi_kit.usage",
    "UsageTracker": "extapi_kit.usage",
    "WebhookDispatcher": "extapi_kit.webhooks",
    "WebhookManager": "extapi_kit.webhooks",
    "WebhookStore": "extapi_kit.webhooks",
    "WebhookVerificationError": "extapi_kit.exceptions",
    "generate_key": "extapi_kit.keys",
    "generate_secret": "extapi_kit.webhooks",
    "get_context": "extapi_kit.context",
    "paginate": "extapi_kit.routing",
    "parse_key": "extapi_kit.keys",
    "register_store": "extapi_kit.stores",
    "store_from_url": "extapi_kit.stores",
    "verify": "extapi_kit.webhooks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'extapi_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
