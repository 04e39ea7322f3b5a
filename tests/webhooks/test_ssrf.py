"""The SSRF guard: the address denylist, URL checks at registration and with injected resolvers."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import UnsafeURLError
from extapi_kit.webhooks.ssrf import (
    IPAddress,
    UnresolvableHostError,
    URLGuard,
    URLRejectedError,
    check_syntax,
    is_denied_address,
    parse_ipv4_number,
)

# W1: every literal the reliability anchors list, plus the rest of the Svix is_allowed table.
DENIED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.254.0.0",
    "172.16.10.65",
    "172.31.255.255",
    "192.168.10.65",
    "169.254.169.254",
    "169.254.45.1",
    "100.64.0.1",
    "100.100.0.0",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "192.0.2.255",
    "198.51.100.65",
    "203.0.113.6",
    "192.0.0.0",
    "192.0.0.8",
    "192.0.0.255",
    "198.18.0.0",
    "198.19.255.255",
    "240.0.0.1",
    "250.10.20.30",
    "224.0.0.1",
    "239.255.255.250",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0:7f00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::8.8.8.8",
    "2002:7f00:1::",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::1",
    "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "100::1",
    "2001:db8::1",
    "fc00::1",
    "fd00::1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "::127.0.0.1",
]
ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "198.20.0.1",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


def _addr(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("text", DENIED)
def test_denied_literals(text: str) -> None:
    """Every W1 range (and its IPv6 encodings) is denied, by the table and at registration (W1)."""
    assert is_denied_address(_addr(text))
    host = f"[{text}]" if ":" in text else text
    with pytest.raises(UnsafeURLError):
        check_syntax(f"https://{host.replace('%', '%25')}/hook")


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_allowed(text: str) -> None:
    """Public addresses, and IPv6 encodings of public IPv4, pass (no over-blocking)."""
    assert not is_denied_address(_addr(text))
    host = f"[{text}]" if ":" in text else text
    check_syntax(f"https://{host}/hook")


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0/",
        "http://0x7f.1/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://127.0.1/",
        "http://3232235521/",
        "http://0xa9fea9fe/",
        "http://169.254.43518/",
        "http://127.0.0.1./",
    ],
)
def test_numeric_spellings_rejected_without_dns(url: str) -> None:
    """Decimal, hex, octal and short IPv4 spellings are decoded and refused at registration (W2)."""
    with pytest.raises(UnsafeURLError):
        check_syntax(url)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x7f.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("8.8.8.8.", "8.8.8.8"),
        ("example.com", None),
        ("1.example", None),
        ("0x", "0.0.0.0"),
    ],
)
def test_parse_ipv4_number(host: str, expected: str | None) -> None:
    """The numeric-host parser follows inet_aton/WHATWG semantics (W2)."""
    result = parse_ipv4_number(host)
    assert (str(result) if result is not None else None) == expected


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.16777216", "09.1.1.1"])
def test_malformed_numeric_hosts_rejected(host: str) -> None:
    """A host that ends in a number but is not a valid IPv4 address is refused, not resolved."""
    with pytest.raises(URLRejectedError) as info:
        parse_ipv4_number(host)
    assert info.value.reason == "invalid_host"


_part = st.one_of(
    st.integers(0, 2**32 - 1).map(str),
    st.integers(0, 2**32 - 1).map(lambda n: f"0x{n:x}"),
    st.integers(1, 2**32 - 1).map(lambda n: f"0{n:o}"),
)


@given(parts=st.lists(_part, min_size=1, max_size=4))
def test_numeric_parser_matches_inet_aton(parts: list[str]) -> None:
    """Differential: whenever libc inet_aton accepts a numeric host we decode the same address."""
    host = ".".join(parts)
    try:
        expected = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        with pytest.raises(URLRejectedError):
            parse_ipv4_number(host)
        return
    assert str(parse_ipv4_number(host)) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("gopher://example.com/", "bad_scheme"),
        ("https://user:pass@example.com/", "userinfo"),
        ("https://user@example.com/", "userinfo"),
        ("http:///path", "no_host"),
        ("https://exa mple.com/", "invalid_host"),
        ("https://[::1/", "invalid_url"),
    ],
)
def test_url_shape_rejected(url: str, reason: str) -> None:
    """Bad scheme, userinfo and a missing host are refused with a reason code."""
    with pytest.raises(URLRejectedError) as info:
        check_syntax(url)
    assert info.value.reason == reason


def test_https_only_guard() -> None:
    """allowed_schemes restricts the schemes (e.g. an https-only deployment)."""
    guard = URLGuard(allowed_schemes=("https",))
    guard.check_syntax("https://example.com/")
    with pytest.raises(UnsafeURLError):
        guard.check_syntax("http://example.com/")


def test_allow_loopback_unlocks_only_loopback() -> None:
    """allow_loopback permits 127/8 and ::1 only (not mapped, not private, not metadata)."""
    guard = URLGuard(allow_loopback=True)
    for ok in ("127.0.0.1", "127.9.9.9", "::1"):
        assert guard.is_allowed(_addr(ok))
    for bad in ("::ffff:127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0", "100.64.0.1"):
        assert not guard.is_allowed(_addr(bad))
    assert not URLGuard().is_allowed(_addr("127.0.0.1"))


def test_allow_private_never_unlocks_link_local_or_cgnat() -> None:
    """allow_private permits RFC 1918 and ULA only; link-local, metadata and CGNAT stay denied."""
    guard = URLGuard(allow_private=True)
    for ok in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "fd12:3456::1"):
        assert guard.is_allowed(_addr(ok))
    for bad in ("169.254.169.254", "fe80::1", "100.64.0.1", "fd00:ec2::254", "127.0.0.1"):
        assert not guard.is_allowed(_addr(bad))


def _resolver(answers: list[str]) -> tuple[URLGuard, list[tuple[str, int]]]:
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return answers

    return URLGuard(resolver=resolve), calls


@pytest.mark.anyio
async def test_check_resolves_and_returns_checked_addresses() -> None:
    """check() resolves the name once and returns the checked addresses with the default port."""
    guard, calls = _resolver(["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"])
    target = await guard.check("https://Hooks.Example.com/in?x=1")
    assert calls == [("hooks.example.com", 443)]
    assert target.host == "hooks.example.com" and target.port == 443 and target.scheme == "https"
    assert target.addresses == [_addr("93.184.216.34"), _addr("2606:2800:220:1::1")]
    target = await guard.check("http://hooks.example.com:8080/")
    assert target.port == 8080 and calls[-1] == ("hooks.example.com", 8080)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answers",
    [["93.184.216.34", "10.0.0.1"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["not-an-ip"]],
)
async def test_any_denied_answer_rejects(answers: list[str]) -> None:
    """If ANY resolved address is denied (or unparseable) the whole URL is refused (W1, W3)."""
    guard, _ = _resolver(answers)
    with pytest.raises(URLRejectedError) as info:
        await guard.check("https://rebind.example/")
    assert info.value.reason == "denied_address"


@pytest.mark.anyio
async def test_unresolvable_host() -> None:
    """A name with no answers, or a resolver error, is a dns_error (nothing is sent)."""
    guard, _ = _resolver([])
    with pytest.raises(UnresolvableHostError) as info:
        await guard.check("https://nothing.example/")
    assert info.value.reason == "dns_error"

    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnresolvableHostError):
        await URLGuard(resolver=failing).check("https://nothing.example/")


@pytest.mark.anyio
async def test_literal_skips_resolver_and_default_resolver_works() -> None:
    """IP literals are checked without DNS; the default resolver (getaddrinfo) maps localhost."""
    guard, calls = _resolver(["10.0.0.1"])
    target = await guard.check("https://[2606:4700:4700::1111]:8443/x")
    assert calls == [] and target.addresses == [_addr("2606:4700:4700::1111")]
    with pytest.raises(UnsafeURLError):
        await URLGuard().check("http://localhost:9/")
    target = await URLGuard(allow_loopback=True).check("http://localhost:9/")
    assert all(a.is_loopback for a in target.addresses)


# G2: an independent oracle written from Svix's is_allowed (bit tests, not network tables).
def _oracle_v4_denied(n: int) -> bool:
    a, b, c = n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF
    return (
        a in (0, 10, 127)
        or (a == 172 and b & 0xF0 == 16)
        or (a == 192 and b == 168)
        or (a == 169 and b == 254)
        or (a == 100 and b & 0xC0 == 64)
        or (a == 192 and b == 0 and c in (0, 2))
        or (a == 198 and b == 51 and c == 100)
        or (a == 203 and b == 0 and c == 113)
        or (a == 198 and b & 0xFE == 18)
        or a >= 224
    )


def _oracle_denied(addr: IPAddress) -> bool:
    n = int(addr)
    if addr.version == 4:
        return _oracle_v4_denied(n)
    seg0, seg1 = n >> 112, (n >> 96) & 0xFFFF
    if n >> 32 == 0xFFFF or n >> 32 == 0x64FF9B << 64:
        return _oracle_v4_denied(n & 0xFFFFFFFF)
    if seg0 == 0x2002:
        return _oracle_v4_denied((n >> 80) & 0xFFFFFFFF)
    return (
        n <= 1
        or seg0 >> 8 == 0xFF
        or seg0 & 0xFFC0 == 0xFE80
        or seg0 & 0xFE00 == 0xFC00
        or (seg0 == 0x2001 and seg1 in (0, 0xDB8))
        or n >> 64 == 0x0100 << 48
    )


_v4 = st.integers(0, 2**32 - 1)
_addresses = st.one_of(
    _v4.map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    _v4.map(lambda n: ipaddress.IPv6Address((0xFFFF << 32) | n)),
    _v4.map(lambda n: ipaddress.IPv6Address((0x64FF9B << 96) | n)),
    st.tuples(_v4, st.integers(0, 2**80 - 1)).map(
        lambda t: ipaddress.IPv6Address((0x2002 << 112) | (t[0] << 80) | t[1])
    ),
    st.tuples(
        st.sampled_from([0xFE80, 0xFC00, 0xFD00, 0xFF02, 0x2001, 0x0100, 0x0000]),
        st.integers(0, 2**112 - 1),
    ).map(lambda t: ipaddress.IPv6Address((t[0] << 112) | t[1])),
)


@given(addr=_addresses)
def test_validator_never_accepts_what_the_oracle_denies(addr: IPAddress) -> None:
    """Property: any address the Svix-style oracle denies is denied by the guard too (G2)."""
    if _oracle_denied(addr):
        assert is_denied_address(addr)
        assert not URLGuard().is_allowed(addr)


@pytest.mark.anyio
@given(addr=_addresses)
async def test_guard_check_never_returns_an_oracle_denied_address(addr: IPAddress) -> None:
    """Property: check() never hands back an address the oracle denies (G2, W3)."""
    guard, _ = _resolver([str(addr)])
    try:
        target = await guard.check("https://h.example/")
    except URLRejectedError:
        return
    assert not any(_oracle_denied(a) for a in target.addresses)


@pytest.mark.parametrize(
    "url", ["http://localhost/h", "https://LOCALHOST./h", "http://a.b.localhost:8/h"]
)
def test_localhost_names_are_refused_at_registration(url: str) -> None:
    """W1: RFC 6761 loopback names are refused without DNS at registration, unless loopback is
    allowed (local demos and tests)."""
    with pytest.raises(UnsafeURLError):
        URLGuard().check_syntax(url)
    URLGuard(allow_loopback=True).check_syntax(url)
