"""Trusted-proxy client IP resolution, the one place in extapi_kit that trusts proxies.

The client address is the socket peer unless that peer is a trusted proxy; then the forwarding
headers (``X-Forwarded-For`` and RFC 7239 ``Forwarded``) are walked **right to left**, skipping
trusted hops, and the first untrusted hop is the client. The leftmost entry is never trusted
blindly: an attacker writes it (case Z5). IPv4-mapped IPv6 addresses are unwrapped and IPv6 zone
ids stripped before any comparison (case Z6).

uvicorn's ``proxy_headers`` (on by default) rewrites ``scope["client"]`` itself when the peer is in
its ``forwarded_allow_ips``; run uvicorn with ``--no-proxy-headers`` (or the same trusted list) so
this resolver sees the real peer.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Sequence

from extapi_kit._types import Scope
from extapi_kit.context import get_context
from extapi_kit.exceptions import ConfigurationError

__all__ = ["ClientIPResolver", "IPNetworkSet", "normalize_ip", "parse_networks"]

logger = logging.getLogger("extapi_kit.clientip")

_RESOLVED_BY = "_clientip_resolver"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_ip(value: str) -> IPAddress | None:
    """Parse an address, unwrapping IPv4-mapped IPv6 and stripping a zone id; None if invalid.

    Args:
        value: an address as text (``"10.0.0.1"``, ``"::ffff:10.0.0.1"``, ``"fe80::1%eth0"``,
            ``"[::1]"``).
    """
    text = value.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    if "%" in text:
        text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_networks(entries: Iterable[str] | str) -> list[IPNetwork]:
    """Parse addresses and CIDR ranges; a bad entry raises ConfigurationError naming it.

    Args:
        entries: ``"10.0.0.0/8"``, ``"2001:db8::/32"``, ``"203.0.113.7"``; a single string may hold
            several entries separated by commas.
    """
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    nets: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip()
        try:
            if "/" in text:
                net = ipaddress.ip_network(text, strict=False)
            else:
                addr = normalize_ip(text)
                if addr is None:
                    raise ValueError(text)
                net = ipaddress.ip_network(addr)
        except ValueError:
            raise ConfigurationError(f"invalid IP address or CIDR range: {entry!r}") from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
            if net.prefixlen >= 96:
                mapped = net.network_address.ipv4_mapped
                net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
        nets.append(net)
    return nets


class IPNetworkSet:
    """A set of networks with a fast membership test.

    Membership is decided by looking up each possible prefix length of the address in a set of
    network integers, so the cost grows with the number of *distinct prefix lengths* (at most 33
    for IPv4, 129 for IPv6), not with the number of entries.

    Args:
        entries: addresses and CIDR ranges.
    """

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, entries: Iterable[str] | str = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(parse_networks(entries))
        self._v4: list[tuple[int, int, frozenset[int]]] = []
        self._v6: list[tuple[int, int, frozenset[int]]] = []
        for bits, table in ((32, self._v4), (128, self._v6)):
            by_len: dict[int, set[int]] = {}
            for net in self.networks:
                if net.max_prefixlen == bits:
                    by_len.setdefault(net.prefixlen, set()).add(int(net.network_address))
            for plen in sorted(by_len):
                mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
                table.append((plen, mask, frozenset(by_len[plen])))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __repr__(self) -> str:
        return f"IPNetworkSet({len(self.networks)} networks)"

    def contains(self, addr: IPAddress | str | None) -> bool:
        """Return whether the address is in any network of the set.

        Args:
            addr: an address object or text; None or unparsable text is never contained.
        """
        if addr is None:
            return False
        if isinstance(addr, str):
            parsed = normalize_ip(addr)
            if parsed is None:
                return False
            addr = parsed
        elif isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        value = int(addr)
        table = self._v4 if addr.version == 4 else self._v6
        for _plen, mask, nets in table:
            if value & mask in nets:
                return True
        return False

    __contains__ = contains


class ClientIPResolver:
    """Resolve the client address of a request, trusting only configured proxies.

    Args:
        trusted_proxies: addresses/CIDRs of proxies whose forwarding headers are believed.
            ``"*"`` trusts every peer (then the client controls the leftmost hop; a warning is
            logged). Empty (default): the socket peer is the client and headers are ignored.
        headers: which forwarding headers to read, in order of preference. List only the header
            your proxy writes: a header it passes through untouched is the client's to forge.
    """

    __slots__ = ("_headers", "_trust_all", "_trusted")

    def __init__(
        self,
        trusted_proxies: Sequence[str] | str = (),
        *,
        headers: Sequence[str] = ("x-forwarded-for",),
    ) -> None:
        if isinstance(trusted_proxies, str):
            entries = [e for e in trusted_proxies.split(",") if e.strip()]
        else:
            entries = list(trusted_proxies)
        self._trust_all = "*" in [e.strip() for e in entries]
        if self._trust_all:
            logger.warning(
                "trusted_proxies='*' trusts forwarding headers from every peer: any client can "
                "claim any address by sending X-Forwarded-For. List your proxies instead."
            )
            entries = [e for e in entries if e.strip() != "*"]
        self._trusted = IPNetworkSet(entries)
        for name in headers:
            if name.lower() not in ("x-forwarded-for", "forwarded", "x-real-ip"):
                raise ConfigurationError(f"unsupported forwarding header: {name!r}")
        self._headers = tuple(h.lower().encode("latin-1") for h in headers)

    def __repr__(self) -> str:
        return f"ClientIPResolver(trusted={len(self._trusted)} networks, all={self._trust_all})"

    def _is_trusted(self, addr: IPAddress) -> bool:
        return self._trust_all or self._trusted.contains(addr)

    def resolve(self, scope: Scope) -> str | None:
        """Return the client address for a scope, cached on the request context.

        Args:
            scope: an ``http`` or ``websocket`` scope.
        """
        ctx = get_context(scope)
        # The cached answer is reused only if this same resolver produced it: a laxer resolver in
        # an outer layer must never decide for a stricter one inside it.
        if ctx.client_ip_resolved and ctx.extra.get(_RESOLVED_BY) is self:
            return ctx.client_ip
        ip = self._resolve(scope)
        ctx.client_ip = ip
        ctx.client_ip_resolved = True
        ctx.extra[_RESOLVED_BY] = self
        return ip

    def _resolve(self, scope: Scope) -> str | None:
        client = scope.get("client")
        if not client:
            return None
        if not (self._trust_all or self._trusted):
            return _peer_text(str(client[0]))
        peer = normalize_ip(str(client[0]))
        if peer is None:
            return None
        if not self._is_trusted(peer):
            return str(peer)
        for header in self._headers:
            hops = _header_hops(scope, header)
            if hops is None:
                continue
            # Walk right to left: the rightmost hop was written by our own trusted proxy.
            for hop in reversed(hops):
                addr = normalize_ip(hop)
                if addr is None:
                    # A hop we cannot parse ends the trust chain; use the last good one.
                    return str(peer)
                if not self._is_trusted(addr):
                    return str(addr)
                peer = addr
            return str(peer)
        return str(peer)


@functools.lru_cache(maxsize=4096)
def _peer_text(host: str) -> str | None:
    addr = normalize_ip(host)
    return None if addr is None else str(addr)


def _header_hops(scope: Scope, name: bytes) -> list[str] | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    if not values:
        return None
    joined = ",".join(values)
    if name == b"forwarded":
        return _forwarded_for(joined)
    return [_strip_port(h.strip()) for h in joined.split(",") if h.strip()]


def _forwarded_for(value: str) -> list[str]:
    # RFC 7239: Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"
    hops: list[str] = []
    for element in value.split(","):
        found = "unknown"
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.strip().lower() == "for":
                found = _strip_port(val.strip().strip('"'))
        hops.append(found)
    return hops


def _strip_port(node: str) -> str:
    if node.startswith("["):
        end = node.find("]")
        return node[1:end] if end > 0 else node
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node
