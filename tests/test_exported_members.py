"""The public API is flat, sorted and locked: changing it must be a deliberate edit here."""

from __future__ import annotations

import extapi_kit

EXPECTED = [
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


def test_all_is_locked() -> None:
    """__all__ equals the reviewed list, so an accidental addition or removal fails here."""
    assert extapi_kit.__all__ == EXPECTED


def test_every_exported_name_exists_and_has_a_home() -> None:
    """Every exported name resolves, and classes/functions live in an extapi_kit module."""
    for name in extapi_kit.__all__:
        obj = getattr(extapi_kit, name)
        module = getattr(obj, "__module__", None)
        if module is not None and callable(obj):
            assert module.startswith("extapi_kit."), (name, module)


def test_importing_the_package_does_not_import_optional_clients() -> None:
    """`import extapi_kit` works without the redis or fastapi extras being imported."""
    import subprocess
    import sys

    code = "import sys, extapi_kit; print('redis' in sys.modules, 'fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_exceptions_form_one_tree() -> None:
    """Every public exception derives from ExtAPIKitError; ConfigurationError is a ValueError."""
    from extapi_kit import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), extapi_kit.ExtAPIKitError)
    assert issubclass(extapi_kit.ConfigurationError, ValueError)


def test_names_load_lazily_on_first_use() -> None:
    """`import extapi_kit` loads no subpackage; a name loads its module on first use only, and
    an unknown name is an AttributeError (not an ImportError from a half-loaded package)."""
    import subprocess
    import sys

    code = (
        "import sys, extapi_kit\n"
        "heavy = ('extapi_kit.routing', 'extapi_kit.webhooks', 'httpx', 'pydantic', 'limits')\n"
        "print(any(m in sys.modules for m in heavy))\n"
        "from extapi_kit import RateLimitMiddleware\n"
        "mods = ('extapi_kit.middleware.rate_limit', 'extapi_kit.webhooks')\n"
        "print(*(m in sys.modules for m in mods))\n"
        "try:\n    extapi_kit.NoSuchName\nexcept AttributeError:\n    print('attr')\n"
        "print(sorted(set(extapi_kit.__all__) - set(dir(extapi_kit))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:4] == ["False", "True False", "attr", "[]"], out.stdout
