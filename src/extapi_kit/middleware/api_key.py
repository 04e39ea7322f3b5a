"""API-key authentication, per-key scopes and per-key networks, as a pure ASGI middleware.

The key is read from ``Authorization: Bearer <key>`` or ``X-API-Key`` (configurable). Every
authentication failure - missing, empty, malformed, unknown, revoked, expired, wrong secret,
duplicated or conflicting headers - gets the *same* 401 problem with the same headers, so nothing
is learned by probing (cases A1, A2). 403 is kept for a valid key that lacks a scope or comes from
a network the key does not allow (A8). A key in the query string is refused with 400 before any
key work, because query strings end up in access logs (A9). With the store down, keys in the
positive cache keep working and the others get 503 with ``Retry-After`` (fail closed, DESIGN §6).

With a ``token_verifier`` (issue 19), a bearer value shaped like a JWT is verified as an access
token instead (:mod:`extapi_kit.oauth.verify`); its refusals are the same 401.

Websockets are authenticated the same way; a refusal closes the socket before ``websocket.accept``
(which the server turns into HTTP 403). ``lifespan`` and unknown scope types pass through.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from extapi_kit._asgi import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER, close_websocket
from extapi_kit._types import ASGIApp, Clock, Receive, Scope, Send
from extapi_kit.analytics.model import note_refusal
from extapi_kit.clientip import ClientIPResolver, IPNetworkSet
from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import ConfigurationError, InvalidKeyError, StoreError
from extapi_kit.keys.format import DEFAULT_MAX_KEY_LENGTH, DEFAULT_PREFIX, contains_key
from extapi_kit.keys.hashing import Hasher
from extapi_kit.keys.service import KeyService, KeyThrottledError
from extapi_kit.keys.store import KeyStore
from extapi_kit.middleware.body_limit import call_with_body_limit
from extapi_kit.problems import send_problem

if TYPE_CHECKING:
    from extapi_kit.oauth.principals import TokenAuthenticator
    from extapi_kit.oauth.verify import TokenVerifier

__all__ = ["ApiKeyMiddleware"]

OnReject = Callable[[Scope], ASGIApp]
_QUERY_NAMES = frozenset({"api_key", "apikey", "api-key", "x-api-key", "key", "access_token"})
_UNAUTHORIZED_DETAIL = "A valid API key is required."
_CIDR_CACHE_MAX = 4096


def _is_jwt(value: str | bytes) -> bool:
    # A compact JWS starts with a base64url '{"' and has two dots; API keys never hold a dot.
    if isinstance(value, bytes):
        return value.startswith(b"eyJ") and value.count(b".") == 2
    return value.startswith("eyJ") and value.count(".") == 2


def _path_set(paths: Iterable[str], what: str) -> tuple[frozenset[str], tuple[str, ...]]:
    exact: set[str] = set()
    prefixes: list[str] = []
    for raw in paths:
        if not isinstance(raw, str) or not raw.startswith("/"):
            raise ConfigurationError(f"{what} must start with '/': {raw!r}")
        if raw.endswith("*"):
            prefixes.append(raw[:-1])
            continue
        path = raw.rstrip("/") or "/"
        exact.add(path)
        if path != "/":
            # Segment-aware: "/health" covers "/health/live" but never "/healthz".
            prefixes.append(path + "/")
    return frozenset(exact), tuple(prefixes)


def _matches(rules: tuple[frozenset[str], tuple[str, ...]], path: str) -> bool:
    exact, prefixes = rules
    return path in exact or (bool(prefixes) and path.startswith(prefixes))


class ApiKeyMiddleware:
    """Require a valid API key on every request that is not exempt or public.

    When a route registry has put ``RouteSettings`` on the request context, the matched route's
    ``scopes`` and ``public`` decide; otherwise ``required_scopes`` and ``public_paths`` do.

    Args:
        app: the ASGI app to protect.
        store: a store URL, a :class:`~extapi_kit.keys.store.KeyStore` or a ready
            :class:`~extapi_kit.keys.service.KeyService`. Required: without one the middleware
            refuses to start (A13).
        required_scopes: scopes every non-public request needs (without a registry).
        exempt_paths: paths never looked at (health checks); ``"/x"`` covers ``/x`` and ``/x/...``,
            ``"/x*"`` is a plain prefix.
        public_paths: paths where a key is optional (but verified when sent).
        header: the API-key header name.
        allow_bearer: also read ``Authorization: Bearer <key>``.
        max_key_length: longer keys are refused without parsing.
        client_ip: the shared client-IP resolver (default: the socket peer).
        cache_ttl: positive-cache TTL in seconds. This, ``prefix``, ``hasher`` and ``clock``
            configure the service the middleware builds from a URL or KeyStore; a ready
            KeyService keeps its own settings.
        prefix: the key prefix.
        on_reject: called with the scope on an HTTP refusal; returns the ASGI app that answers
            instead of the default problem (the context already records the rejection).
        reject_query_keys: refuse requests carrying a key in the query string (400).
        retry_after: ``Retry-After`` seconds sent with 503 when the store is down.
        hasher: the service's hasher (default argon2id at OWASP-minimum parameters).
        clock: the service's epoch-seconds clock.
        token_verifier: also accept JWT access tokens (``Authorization: Bearer <jwt>``, issue
            19): a :class:`~extapi_kit.oauth.verify.TokenVerifier`. A token of our issuer stands
            for the key named by its ``sub`` (that key's revocation, expiry, networks, limits
            and quota apply; scopes are the key's and the token's in common); an external
            provider's token for the principal its claims map to. Refusals are the same 401.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: str | KeyStore | KeyService | None = None,
        required_scopes: Sequence[str] = (),
        exempt_paths: Iterable[str] = (),
        public_paths: Iterable[str] = (),
        header: str = "x-api-key",
        allow_bearer: bool = True,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        client_ip: ClientIPResolver | None = None,
        cache_ttl: float = 10.0,
        prefix: str = DEFAULT_PREFIX,
        on_reject: OnReject | None = None,
        reject_query_keys: bool = True,
        retry_after: int = 5,
        hasher: Hasher | None = None,
        clock: Clock = time.time,
        token_verifier: TokenVerifier | None = None,
    ) -> None:
        self.app = app
        if store is None:
            raise ConfigurationError(
                "ApiKeyMiddleware needs a key store: store='sqlite:///keys.db', a KeyStore or a "
                "KeyService (refusing to run unauthenticated)"
            )
        self._owns_service = not isinstance(store, KeyService)
        if isinstance(store, KeyService):
            self.service = store
        else:
            self.service = KeyService(
                store,
                hasher=hasher,
                prefix=prefix,
                cache_ttl=cache_ttl,
                max_key_length=max_key_length,
                clock=clock,
            )
        self._prefix = self.service.prefix
        self._max_len = max_key_length
        if isinstance(required_scopes, str):
            required_scopes = [required_scopes]
        self._required = tuple(required_scopes)
        self._exempt = _path_set(exempt_paths, "exempt path")
        self._public = _path_set(public_paths, "public path")
        if not header or not header.isascii() or " " in header:
            raise ConfigurationError(f"invalid header name {header!r}")
        self._header = header.lower().encode("ascii")
        shown = "X-API-Key" if header.lower() == "x-api-key" else header
        challenge = f'ApiKey header="{shown}"'
        if allow_bearer:
            challenge = f'Bearer realm="api", {challenge}'
        self._challenge = [(b"www-authenticate", challenge.encode("ascii"))]
        self._allow_bearer = allow_bearer
        self._resolver = client_ip or ClientIPResolver()
        self._on_reject = on_reject
        self._reject_query = reject_query_keys
        self._retry_after = [(b"retry-after", str(int(retry_after)).encode())]
        self._cidr_sets: dict[tuple[str, ...], IPNetworkSet] = {}
        self._tokens: TokenAuthenticator | None = None
        self._max_token_len = 0
        if token_verifier is not None:
            # Imported here: joserfc is loaded only by stacks that accept tokens.
            from extapi_kit.oauth.principals import TokenAuthenticator

            self._tokens = TokenAuthenticator(
                token_verifier, self.service, cache_ttl=cache_ttl, clock=clock
            )
            self._max_token_len = token_verifier.max_token_length

    def __repr__(self) -> str:
        return f"ApiKeyMiddleware(service={self.service!r}, header={self._header.decode()!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or _matches(self._exempt, scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        if self._reject_query and scope.get("query_string") and self._key_in_query(scope):
            detail = "Send the API key in the X-API-Key or Authorization header."
            await self._reject(scope, receive, send, "api-key-in-query", detail)
            return
        route = ctx.route
        if route is not None:
            required, public = route.scopes, route.public
        else:
            required, public = self._required, _matches(self._public, scope.get("path", ""))
        presented = self._presented(scope)
        if presented is None:
            if public:
                await self.app(scope, receive, send)
                return
            await self._unauthorized(scope, receive, send)
            return
        if not presented:
            await self._unauthorized(scope, receive, send)
            return
        client_ip = self._resolver.resolve(scope)
        try:
            if self._tokens is not None and _is_jwt(presented):
                principal = await self._token_principal(presented, client_ip)
            else:
                principal = await self.service.verify(presented, client_ip=client_ip)
        except KeyThrottledError as exc:
            note_refusal(ctx, exc)
            headers = [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())]
            detail = "Too many failed attempts; try again later."
            await self._reject(scope, receive, send, "too-many-failed-attempts", detail, headers)
            return
        except InvalidKeyError as exc:
            note_refusal(ctx, exc)
            await self._unauthorized(scope, receive, send)
            return
        except StoreError:
            detail = "Authentication is temporarily unavailable."
            await self._reject(
                scope, receive, send, "service-unavailable", detail, self._retry_after
            )
            return
        # The key is authentic: record who it is even if a check below refuses the request, so
        # the audit trail attributes 403s to the key that earned them.
        ctx.principal = principal
        if principal.allowed_cidrs and not self._network_ok(principal, client_ip):
            detail = "This API key may not be used from this network."
            await self._reject(scope, receive, send, "ip-not-allowed", detail)
            return
        missing = [s for s in required if not principal.has_scope(s)]
        if missing:
            detail = "This API key lacks the required scope: " + ", ".join(missing)
            await self._reject(scope, receive, send, "insufficient-scope", detail)
            return
        if principal.body_limit is not None and kind == "http":
            # A plan's body limit (issue 20): known only now that the caller is.
            await call_with_body_limit(self.app, scope, receive, send, principal.body_limit)
            return
        await self.app(scope, receive, send)

    async def _token_principal(self, token: str, client_ip: str | None) -> Principal:
        # Tokens spend the source's failed-attempt budget like keys: a source that sent too
        # many bad keys or tokens is refused before any signature work (O4).
        service = self.service
        wait = service.throttle_wait(client_ip)
        if wait is not None:
            raise KeyThrottledError(wait)
        if self._tokens is None:  # an internal invariant, not user input
            raise RuntimeError("only called when a token verifier is configured")
        try:
            return await self._tokens.authenticate(token)
        except InvalidKeyError:
            service.note_failure(client_ip)
            raise

    def _presented(self, scope: Scope) -> str | None:
        """Return the presented key, "" for an invalid combination, None when none was sent."""
        api: list[bytes] = []
        auth: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == self._header:
                api.append(value)
            elif name == b"authorization" and self._allow_bearer:
                auth.append(value)
        if len(api) > 1 or len(auth) > 1:
            return ""  # duplicated headers: refuse rather than guess which one counts
        bearer: bytes | None = None
        if auth:
            scheme, _, token = auth[0].strip().partition(b" ")
            if scheme.lower() == b"bearer":
                bearer = token.strip()
        key = api[0].strip() if api else None
        if key and bearer and not hmac.compare_digest(key, bearer):
            return ""  # two different keys: refuse (A12: compare in constant time)
        value = key or bearer
        if value is None:
            return None
        if len(value) > self._max_len and not (
            len(value) <= self._max_token_len and _is_jwt(value)
        ):
            return ""
        return value.decode("latin-1")

    def _key_in_query(self, scope: Scope) -> bool:
        query = bytes(scope["query_string"]).decode("latin-1")
        # The audit redactor looks at the same "&"-separated parts with the same detector, so
        # every refused key is also redacted from the audit record, whatever its name (A17).
        if any(contains_key(part) for part in query.split("&")):
            return True
        marker = self._prefix + "_"
        # A key-like value under a key's name (api_key=xk_...) is refused even when mistyped;
        # those names are redacted by name in the audit record.
        return any(
            name.lower() in _QUERY_NAMES and value.startswith(marker)
            for name, value in parse_qsl(query, keep_blank_values=False)
        )

    def _network_ok(self, principal: Principal, client_ip: str | None) -> bool:
        nets = self._cidr_sets.get(principal.allowed_cidrs)
        if nets is None:
            if len(self._cidr_sets) >= _CIDR_CACHE_MAX:
                self._cidr_sets.clear()
            nets = self._cidr_sets[principal.allowed_cidrs] = IPNetworkSet(principal.allowed_cidrs)
        return nets.contains(client_ip)

    async def _unauthorized(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._reject(
            scope, receive, send, "unauthorized", _UNAUTHORIZED_DETAIL, self._challenge
        )

    async def _reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        slug: str,
        detail: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        ctx = get_context(scope)
        if scope["type"] == "websocket":
            if ctx.rejection is None:
                ctx.rejection = slug
            code = WS_TRY_AGAIN_LATER if slug == "service-unavailable" else WS_POLICY_VIOLATION
            await close_websocket(send, code)
            return
        if self._on_reject is not None:
            if ctx.rejection is None:
                ctx.rejection = slug
            await self._on_reject(scope)(scope, receive, send)
            return
        await send_problem(send, slug, detail, headers=headers or (), scope=scope)

    async def aclose(self) -> None:
        """Finish background writes and close the store if this middleware created it."""
        if self._tokens is not None:
            await self._tokens.aclose()
        if self._owns_service:
            await self.service.aclose()
