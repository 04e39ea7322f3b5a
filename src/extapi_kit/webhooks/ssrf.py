"""SSRF guard for outbound webhooks: an explicit address denylist and a URL checker.

Python's ``ipaddress`` flags are not an SSRF filter (on 3.11.7 ``::ffff:127.0.0.1`` is not
``is_loopback``, ``64:ff9b::7f00:1`` and ``192.0.0.8`` are ``is_global``), and spellings such as
``2130706433`` or ``0x7f000001`` reach 127.0.0.1 through ``getaddrinfo``. So the guard resolves the
name itself, checks **every** answer against the table below (modelled on Svix's ``is_allowed`` in
``webhook_http_client.rs``, extended with multicast and the IPv6 encodings of IPv4), and returns the
checked addresses so the sender can connect to one of them and nothing else (no DNS-rebinding
window; anchors-reliability W1-W3).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from extapi_kit.exceptions import UnsafeURLError

__all__ = [
    "IPAddress",
    "ResolvedTarget",
    "URLGuard",
    "URLRejectedError",
    "UnresolvableHostError",
    "check_syntax",
    "is_denied_address",
    "parse_ipv4_number",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
_DENIED_V4: tuple[ipaddress.IPv4Network, ...] = (
    _V4("0.0.0.0/8"),  # "this network"; 0.0.0.0 reaches localhost on Linux
    _V4("10.0.0.0/8"),  # RFC 1918
    _V4("100.64.0.0/10"),  # CGNAT shared space (RFC 6598)
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local, cloud metadata 169.254.169.254
    _V4("172.16.0.0/12"),  # RFC 1918
    _V4("192.0.0.0/24"),  # IETF protocol assignments (192.0.0.8 etc.)
    _V4("192.0.2.0/24"),  # TEST-NET-1
    _V4("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    _V4("192.168.0.0/16"),  # RFC 1918
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # TEST-NET-2
    _V4("203.0.113.0/24"),  # TEST-NET-3
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, includes broadcast 255.255.255.255
)
_DENIED_V6: tuple[ipaddress.IPv6Network, ...] = (
    _V6("::/96"),  # unspecified, loopback, deprecated IPv4-compatible ::a.b.c.d
    _V6("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): translator-specific, deny outright
    _V6("100::/64"),  # discard-only
    _V6("2001::/32"),  # Teredo: the embedded client address is obfuscated, deny outright
    _V6("2001:db8::/32"),  # documentation
    _V6("fc00::/7"),  # unique local (includes fd00:ec2::254, the AWS metadata address)
    _V6("fe80::/10"),  # link-local
    _V6("fec0::/10"),  # deprecated site-local
    _V6("ff00::/8"),  # multicast
)
# IPv6 forms that carry an IPv4 address which decides the verdict.
_MAPPED = _V6("::ffff:0:0/96")  # IPv4-mapped
_TRANSLATED = _V6("::ffff:0:0:0/96")  # IPv4-translated (SIIT, RFC 2765)
_NAT64 = _V6("64:ff9b::/96")  # well-known NAT64 prefix (RFC 6052)
_SIX_TO_FOUR = _V6("2002::/16")  # 6to4: bits 16-48 are the IPv4 address
_LOOPBACK_V4 = _V4("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
# "allow_private" unlocks RFC 1918 and ULA only; never link-local, metadata or CGNAT.
_PRIVATE: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    _V4("10.0.0.0/8"),
    _V4("172.16.0.0/12"),
    _V4("192.168.0.0/16"),
    _V6("fc00::/7"),
)
_LINK_LOCAL_ULA = (_V6("fd00:ec2::/32"),)  # AWS IMDS over IPv6 stays denied even with allow_private
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    packed = addr.packed
    if addr in _MAPPED or addr in _TRANSLATED or addr in _NAT64:
        return ipaddress.IPv4Address(packed[12:])
    if addr in _SIX_TO_FOUR:
        return ipaddress.IPv4Address(packed[2:6])
    return None


def is_denied_address(addr: IPAddress) -> bool:
    """Return True when an address must never be the target of an outbound webhook.

    IPv6 encodings of IPv4 (mapped, translated, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are
    judged by the IPv4 address they carry.

    Args:
        addr: the resolved address.
    """
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            addr = ipaddress.IPv6Address(addr.packed)
        inner = _embedded_v4(addr)
        if inner is not None:
            return is_denied_address(inner)
        return any(addr in net for net in _DENIED_V6)
    return any(addr in net for net in _DENIED_V4)


def parse_ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """Parse the IPv4 spellings that ``inet_aton``/``getaddrinfo`` (and WHATWG URLs) accept.

    ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1`` and ``0`` all mean an IPv4 address.
    Returns None when ``host`` is not such a number (a DNS name).

    Args:
        host: the URL host, without brackets.

    Raises:
        UnsafeURLError: when the host looks numeric but is not a valid address (e.g. ``1.2.3.4.5``).
    """
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # WHATWG allows one trailing dot
    last = parts[-1] if parts else ""
    if not last or not _is_number(last):
        return None
    if len(parts) > 4 or not all(_is_number(p) for p in parts):
        raise URLRejectedError("invalid_host", f"host {host!r} is a malformed IPv4 address")
    values = [_number(p) for p in parts]
    if any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise URLRejectedError("invalid_host", f"host {host!r} is a malformed IPv4 address")
    total = values[-1]
    for i, v in enumerate(values[:-1]):
        total += v << (8 * (3 - i))
    return ipaddress.IPv4Address(total)


def _is_number(part: str) -> bool:
    lowered = part.lower()
    if lowered.startswith("0x"):
        digits = lowered[2:]
        return all(c in "0123456789abcdef" for c in digits)  # "0x" alone is 0
    return part != "" and part.isascii() and part.isdigit()


def _number(part: str) -> int:
    lowered = part.lower()
    if lowered.startswith("0x"):
        return int(lowered[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        if any(c in "89" for c in part):
            raise URLRejectedError("invalid_host", f"{part!r} is not an octal number")
        return int(part, 8)
    return int(part)


class URLRejectedError(UnsafeURLError):
    """An outbound URL was refused by the SSRF guard; ``reason`` is a short machine code.

    Args:
        reason: ``invalid_url``, ``invalid_port``, ``bad_scheme``, ``userinfo``, ``no_host``,
            ``invalid_host``, ``denied_address`` or ``dns_error``.
        message: a human-readable explanation (never contains secrets).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnresolvableHostError(URLRejectedError):
    """The host name did not resolve (no address could be checked, so nothing is sent)."""


@dataclass(frozen=True)
class ResolvedTarget:
    """A URL that passed the guard, with the checked addresses to connect to.

    Args:
        url: the URL as given.
        host: the host name or literal (lowercase, no brackets).
        port: the port (explicit or the scheme default).
        scheme: ``http`` or ``https``.
        addresses: the checked addresses, in resolver order; connect only to these.
    """

    url: str
    host: str
    port: int
    scheme: str
    addresses: list[IPAddress] = field(default_factory=list)


_PARSE_CACHE = 4096


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class URLGuard:
    """Checks outbound URLs: scheme, no userinfo, and every resolved address against the denylist.

    Args:
        allow_loopback: also permit 127.0.0.0/8 and ::1 (tests and local demos; never production).
        allow_private: also permit RFC 1918 and fc00::/7 (never link-local, metadata or CGNAT).
        allowed_schemes: the URL schemes accepted.
        resolver: ``async (host, port) -> [address strings]``; default ``loop.getaddrinfo``.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        allow_private: bool = False,
        allowed_schemes: Sequence[str] = ("https", "http"),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.allow_private = allow_private
        self.allowed_schemes = tuple(s.lower() for s in allowed_schemes)
        self._resolver = resolver or _getaddrinfo
        # URL -> parsed parts: parsing is pure and costs ~20 µs per send; addresses are still
        # checked (and names resolved) on every call.
        self._parsed: dict[str, tuple[str, str, int, IPAddress | None]] = {}

    def __repr__(self) -> str:
        return (
            f"URLGuard(allow_loopback={self.allow_loopback}, allow_private={self.allow_private}, "
            f"allowed_schemes={self.allowed_schemes!r})"
        )

    def is_allowed(self, addr: IPAddress) -> bool:
        """Return True when this guard lets a connection go to ``addr``.

        Args:
            addr: a resolved address.
        """
        if not is_denied_address(addr):
            return True
        if self.allow_loopback and (addr in _LOOPBACK_V4 or addr == _LOOPBACK_V6):
            return True
        if self.allow_private and not any(addr in net for net in _LINK_LOCAL_ULA):
            return any(addr.version == net.version and addr in net for net in _PRIVATE)
        return False

    def _parse(self, url: str) -> tuple[str, str, int, IPAddress | None]:
        hit = self._parsed.get(url)
        if hit is not None:
            return hit
        parts = self._parse_uncached(url)
        if len(self._parsed) >= _PARSE_CACHE:
            self._parsed.clear()
        self._parsed[url] = parts
        return parts

    def _parse_uncached(self, url: str) -> tuple[str, str, int, IPAddress | None]:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise URLRejectedError("invalid_url", "the URL cannot be parsed") from exc
        scheme = parsed.scheme.lower()
        if scheme not in self.allowed_schemes:
            raise URLRejectedError("bad_scheme", f"scheme {scheme!r} is not allowed")
        if parsed.userinfo:
            raise URLRejectedError("userinfo", "credentials in the URL are not allowed")
        host = parsed.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise URLRejectedError("no_host", "the URL has no host")
        if parsed.port is not None and not 1 <= parsed.port <= 65535:
            # A port no socket takes (0, 99999) would make every send raise, not fail (W14).
            raise URLRejectedError(
                "invalid_port", f"the URL port must be between 1 and 65535 (got {parsed.port})"
            )
        port = parsed.port or _DEFAULT_PORTS.get(scheme, 443)
        literal: IPAddress | None
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = parse_ipv4_number(host)
            if literal is None and not _HOSTNAME.fullmatch(host):
                raise URLRejectedError("invalid_host", "the URL host is not a valid name") from None
        return scheme, host, port, literal

    def _check_address(self, host: str, addr: IPAddress) -> None:
        if not self.is_allowed(addr):
            raise URLRejectedError(
                "denied_address", f"{host!r} resolves to a denied address ({addr})"
            )

    def check_syntax(self, url: str) -> None:
        """Validate a URL without DNS (at registration); IP literals and numeric hosts are checked.

        Args:
            url: the endpoint URL.

        Raises:
            UnsafeURLError: for a bad scheme, userinfo, no host, or a denied literal address.
        """
        _scheme, host, _port, literal = self._parse(url)
        if literal is not None:
            self._check_address(host, literal)
        elif not self.allow_loopback and (host == "localhost" or host.endswith(".localhost")):
            # RFC 6761 §6.3: these names are loopback by definition, so refuse them now rather
            # than at the first send (the send-time check would refuse them after DNS anyway).
            raise URLRejectedError("denied_address", f"{host!r} is a loopback name")

    async def check(self, url: str) -> ResolvedTarget:
        """Validate a URL and resolve it; every resolved address must be allowed.

        Args:
            url: the endpoint URL.

        Raises:
            UnresolvableHostError: when the name does not resolve (``reason == "dns_error"``).
            UnsafeURLError: for a bad scheme, userinfo, no host, or any denied address.
        """
        scheme, host, port, literal = self._parse(url)
        if literal is not None:
            self._check_address(host, literal)
            return ResolvedTarget(url, host, port, scheme, [literal])
        try:
            answers = await self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnresolvableHostError("dns_error", f"{host!r} did not resolve") from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                addr = ipaddress.ip_address(answer)
            except ValueError as exc:  # fail closed on anything we cannot classify
                raise URLRejectedError(
                    "denied_address", f"{host!r} resolved to an unparseable address"
                ) from exc
            self._check_address(host, addr)
            if addr not in addresses:
                addresses.append(addr)
        if not addresses:
            raise UnresolvableHostError("dns_error", f"{host!r} has no addresses")
        return ResolvedTarget(url, host, port, scheme, addresses)


def check_syntax(url: str, *, allow_loopback: bool = False, allow_private: bool = False) -> None:
    """Validate a URL at registration time, without DNS (see :meth:`URLGuard.check_syntax`).

    Args:
        url: the endpoint URL.
        allow_loopback: permit loopback literals.
        allow_private: permit RFC 1918 / ULA literals.

    Raises:
        UnsafeURLError: when the URL is refused.
    """
    URLGuard(allow_loopback=allow_loopback, allow_private=allow_private).check_syntax(url)
