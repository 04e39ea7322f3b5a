"""extapi_kit: open an internal API to the outside world, securely, in a few lines.

Every name here is re-exported from the module that implements it; the list is locked by
``tests/test_exported_members.py`` so the public API never changes by accident.
"""

from __future__ import annotations

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
