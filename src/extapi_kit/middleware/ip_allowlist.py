"""Global and per-route IP allow/deny lists (addresses and CIDR ranges, IPv4 and IPv6).

The client address comes from the shared :class:`~extapi_kit.clientip.ClientIPResolver`, the one
place that trusts proxies (right-to-left walk of ``X-Forwarded-For``/``Forwarded``, IPv4-mapped
IPv6 unwrapped, zone ids stripped: cases Z5, Z6). Lists are parsed once, at construction, into
:class:`~extapi_kit.clientip.IPNetworkSet`, whose membership test costs one set lookup per distinct
prefix length, so a decision does not get slower as lists grow.

Per-key CIDRs (``Principal.allowed_cidrs``) are enforced by the API-key middleware, after the key
is verified; this middleware runs before any key work (DESIGN §3), so a denied network never costs
a hash verification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from extapi_kit._asgi import WS_POLICY_VIOLATION, close_websocket
from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver, IPAddress, IPNetworkSet, normalize_ip
from extapi_kit.context import get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.problems import send_problem

__all__ = ["IPAllowlistMiddleware"]

logger = logging.getLogger("extapi_kit.ip_allowlist")

REJECTION = "ip-not-allowed"
# The 403 body never names the lists or the address: a prober learns nothing about the policy.
_DETAIL = "Requests from this network are not accepted."
# Route lists are parsed on first use and kept; a registry declares a bounded number of them.
_ROUTE_CACHE_MAX = 4096

OnReject = Callable[[Scope], ASGIApp]

# Parsed client addresses, so a returning client costs a dict lookup instead of ipaddress parsing.
# Bounded: a flood of distinct addresses only empties it (memory stays flat, cost falls back).
_ADDR_CACHE_MAX = 8192
_addr_cache: dict[str, IPAddress | None] = {}


def _parse(ip: str) -> IPAddress | None:
    try:
        return _addr_cache[ip]
    except KeyError:
        pass
    addr = normalize_ip(ip)
    if len(_addr_cache) >= _ADDR_CACHE_MAX:
        _addr_cache.clear()
    _addr_cache[ip] = addr
    return addr


def _path_set(paths: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    exact: set[str] = set()
    prefixes: list[str] = []
    for raw in paths:
        if not raw.startswith("/"):
            raise ConfigurationError(f"exempt path must start with '/': {raw!r}")
        path = raw.rstrip("/") or "/"
        exact.add(path)
        if path != "/":
            # Segment-aware: "/health" exempts "/health/live" but never "/healthz".
            prefixes.append(path + "/")
    return frozenset(exact), tuple(prefixes)


class IPAllowlistMiddleware:
    """Refuse requests whose client address is denied or not allowed.

    Deny wins over allow. An empty ``allow`` allows every address that is not denied; when an
    allow list applies (global, or the matched route's ``RouteSettings.ip_allow``), a request whose
    client address cannot be resolved is refused. HTTP refusals are a 403 ``ip-not-allowed``
    problem; websockets are closed with 1008 (policy violation) before ``websocket.accept``, which
    the server turns into an HTTP 403.

    Args:
        app: the ASGI app to protect.
        allow: addresses and CIDR ranges allowed to call (empty: everyone not denied).
        deny: addresses and CIDR ranges always refused.
        trusted_proxies: proxies whose forwarding headers are believed; builds the resolver.
            Give either this or ``client_ip``, not both.
        client_ip: a shared resolver (the same instance every layer uses).
        exempt_paths: paths never checked (e.g. ``"/health"``), matched per path segment.
        on_reject: called with the scope on an HTTP refusal; returns the ASGI app that answers
            instead of the default problem (the context already records the rejection).

    Raises:
        ConfigurationError: on a bad list entry (the error names it), a bad exempt path, or when
            both ``trusted_proxies`` and ``client_ip`` are given.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow: Sequence[str] | str = (),
        deny: Sequence[str] | str = (),
        trusted_proxies: Sequence[str] | str = (),
        client_ip: ClientIPResolver | None = None,
        exempt_paths: Iterable[str] = (),
        on_reject: OnReject | None = None,
    ) -> None:
        if client_ip is not None and trusted_proxies:
            raise ConfigurationError(
                "give either client_ip= (a shared resolver) or trusted_proxies=, not both"
            )
        self.app = app
        self.allow = IPNetworkSet(allow)
        self.deny = IPNetworkSet(deny)
        self.resolver = client_ip if client_ip is not None else ClientIPResolver(trusted_proxies)
        self._exempt, self._exempt_prefixes = _path_set(exempt_paths)
        self.on_reject = on_reject
        self._route_sets: dict[tuple[str, ...], IPNetworkSet] = {}
        # Global decisions per resolved address (the lists never change after __init__), bounded
        # like the address cache, so a returning client costs one dict lookup.
        self._decisions: dict[str, bool] = {}
        if not self.allow and not self.deny:
            logger.warning(
                "IPAllowlistMiddleware has no allow or deny list: only per-route lists "
                "(RouteSettings.ip_allow) are enforced"
            )

    def __repr__(self) -> str:
        return (
            f"IPAllowlistMiddleware(allow={len(self.allow)} networks, "
            f"deny={len(self.deny)} networks, resolver={self.resolver!r})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in self._exempt or path.startswith(self._exempt_prefixes):
            await self.app(scope, receive, send)
            return
        if self.is_allowed(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        if ctx.rejection is None:
            ctx.rejection = REJECTION
        if kind == "websocket":
            await close_websocket(send, WS_POLICY_VIOLATION, "ip not allowed")
        elif self.on_reject is not None:
            await self.on_reject(scope)(scope, receive, send)
        else:
            await send_problem(send, REJECTION, _DETAIL, scope=scope)

    def is_allowed(self, scope: Scope) -> bool:
        """Return whether the request's client address passes the global and route lists.

        Args:
            scope: an ``http`` or ``websocket`` scope.
        """
        ip = self.resolver.resolve(scope)
        route = get_context(scope).route
        route_allow = self._route_set(route.ip_allow) if route is not None else None
        addr = _parse(ip) if ip is not None else None
        if addr is None or ip is None:
            # Unknown address: refuse whenever some allow list applies (case A13).
            return not self.allow and not route_allow
        allowed = self._decisions.get(ip)
        if allowed is None:
            allowed = not self.deny.contains(addr) and (not self.allow or self.allow.contains(addr))
            if len(self._decisions) >= _ADDR_CACHE_MAX:
                self._decisions.clear()
            self._decisions[ip] = allowed
        return allowed and (not route_allow or route_allow.contains(addr))

    def _route_set(self, entries: tuple[str, ...]) -> IPNetworkSet | None:
        if not entries:
            return None
        found = self._route_sets.get(entries)
        if found is None:
            found = IPNetworkSet(entries)
            if len(self._route_sets) >= _ROUTE_CACHE_MAX:
                self._route_sets.clear()
            self._route_sets[entries] = found
        return found
