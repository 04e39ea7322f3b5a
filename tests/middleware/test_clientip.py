"""The shared client-IP resolver and network sets (clientip.py): Z5, Z6, ipaddress as oracle."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit import ConfigurationError
from extapi_kit._types import Scope
from extapi_kit.clientip import ClientIPResolver, IPNetworkSet, normalize_ip, parse_networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
MAPPED = st.integers(0, 2**32 - 1).map(lambda n: ipaddress.IPv6Address((0xFFFF << 32) | n))


@st.composite
def networks(draw: st.DrawFn) -> Network:
    kind = draw(st.sampled_from(["v4", "v6", "mapped"]))
    if kind == "v4":
        return ipaddress.ip_network((draw(V4), draw(st.integers(0, 32))), strict=False)
    if kind == "v6":
        return ipaddress.ip_network((draw(V6), draw(st.integers(0, 128))), strict=False)
    return ipaddress.ip_network((draw(MAPPED), draw(st.integers(96, 128))), strict=False)


@st.composite
def near(draw: st.DrawFn, nets: list[Network]) -> Address:
    """An address inside, at the edge of, or just outside one of ``nets`` (or anywhere)."""
    if not nets or draw(st.booleans()):
        return draw(st.one_of(V4, V6, MAPPED))
    net = draw(st.sampled_from(nets))
    base = int(net.broadcast_address) if draw(st.booleans()) else int(net.network_address)
    value = (base + draw(st.integers(-2, 2))) % (2**net.max_prefixlen)
    return ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value)


def canonical(addr: Address) -> Address:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def canonical_net(net: Network) -> Network:
    mapped = net.network_address.ipv4_mapped if isinstance(net, ipaddress.IPv6Network) else None
    if mapped is not None and net.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def oracle(addr: Address, nets: list[Network]) -> bool:
    a = canonical(addr)
    return any(a.version == n.version and a in n for n in map(canonical_net, nets))


@given(data=st.data(), nets=st.lists(networks(), max_size=12))
def test_network_set_matches_ipaddress_oracle(data: st.DataObject, nets: list[Network]) -> None:
    """Z6: IPNetworkSet membership equals ipaddress `in` (v4, v6, mapped unwrapped to v4)."""
    subject = IPNetworkSet([str(n) for n in nets])
    for _ in range(5):
        addr = data.draw(near(nets))
        assert subject.contains(str(addr)) is oracle(addr, nets)


@given(addr=st.one_of(V4, V6))
def test_plain_entries_match_themselves_and_mapped_spelling(addr: Address) -> None:
    """Z6: a bare address entry is a /32 or /128; its mapped spelling matches like plain IPv4."""
    subject = IPNetworkSet([str(addr)])
    assert subject.contains(str(addr))
    if addr.version == 4:
        assert subject.contains(f"::ffff:{addr}")


@given(addr=V4, zone=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
def test_normalize_unwraps_mapped_and_strips_zone(addr: ipaddress.IPv4Address, zone: str) -> None:
    """Z6: normalize_ip unwraps ::ffff:a.b.c.d and strips %zone ids (also inside brackets)."""
    assert normalize_ip(f"::ffff:{addr}") == addr
    assert normalize_ip(f"[::ffff:{addr}]") == addr
    link_local = ipaddress.IPv6Address(f"fe80::{int(addr) & 0xFFFF:x}")
    assert normalize_ip(f"{link_local}%{zone}") == link_local


@given(text=st.text(max_size=20))
def test_normalize_never_raises(text: str) -> None:
    """normalize_ip returns None for anything that is not an address, never raises."""
    result = normalize_ip(text)
    assert result is None or isinstance(result, ipaddress.IPv4Address | ipaddress.IPv6Address)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0", "::g", "example.com", "1.2.3.4/-1"])
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    """A bad entry raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=bad.replace(".", r"\.")):
        parse_networks(["10.0.0.1", bad])


def test_parse_networks_accepts_a_comma_separated_string() -> None:
    """A single string may hold several comma-separated entries."""
    assert [str(n) for n in parse_networks("10.0.0.0/8, 2001:db8::/32")] == [
        "10.0.0.0/8",
        "2001:db8::/32",
    ]


def scope(peer: str | None, *headers: tuple[str, str]) -> Scope:
    s: Scope = {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers]}
    if peer is not None:
        s["client"] = (peer, 1234)
    return s


def test_untrusted_peer_headers_are_ignored() -> None:
    """Z5: without trusted proxies (or from an untrusted peer) the socket peer is the client."""
    spoof = ("x-forwarded-for", "10.0.0.1")
    assert ClientIPResolver().resolve(scope("203.0.113.7", spoof)) == "203.0.113.7"
    trusted = ClientIPResolver(["192.168.0.0/16"])
    assert trusted.resolve(scope("203.0.113.7", spoof)) == "203.0.113.7"


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("x-forwarded-for", "10.0.0.1, 198.51.100.9", "198.51.100.9"),
        ("x-forwarded-for", "10.0.0.1, 198.51.100.9:5555, 192.168.0.2", "198.51.100.9"),
        ("x-forwarded-for", "192.168.0.3, 192.168.0.2", "192.168.0.3"),
        ("x-forwarded-for", "garbage, 198.51.100.9", "198.51.100.9"),
        ("x-forwarded-for", "198.51.100.9, garbage", "192.168.0.1"),
        ("forwarded", 'for=10.0.0.1, For="[2001:db8::7]:4711";proto=https', "2001:db8::7"),
        ("forwarded", "for=198.51.100.9, for=unknown", "192.168.0.1"),
        ("forwarded", 'for="[::ffff:198.51.100.9]"', "198.51.100.9"),
        ("x-forwarded-for", "[fe80::1%25eth0]:80", "fe80::1"),
    ],
)
def test_forwarding_headers_are_walked_right_to_left(
    header: str, value: str, expected: str
) -> None:
    """Z5: the rightmost untrusted hop is the client; an unparsable hop stops the walk."""
    resolver = ClientIPResolver(["192.168.0.0/16"], headers=[header])
    assert resolver.resolve(scope("192.168.0.1", (header, value))) == expected


def test_unlisted_forwarding_header_is_ignored() -> None:
    """Z5: by default only X-Forwarded-For is read; a client-written Forwarded is ignored."""
    resolver = ClientIPResolver(["192.168.0.0/16"])
    s = scope("192.168.0.1", ("forwarded", "for=198.51.100.9"))
    assert resolver.resolve(s) == "192.168.0.1"


def test_several_header_lines_are_joined_in_order() -> None:
    """Z5: repeated X-Forwarded-For lines count as one list, so the proxy's line stays rightmost."""
    resolver = ClientIPResolver(["192.168.0.0/16"])
    s = scope("192.168.0.1", ("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "198.51.100.9"))
    assert resolver.resolve(s) == "198.51.100.9"


TRUSTED = ipaddress.IPv4Network("192.168.0.0/16")
UNTRUSTED_V4 = V4.filter(lambda a: a not in TRUSTED)
TRUSTED_V4 = st.integers(0, 0xFFFF).map(lambda n: TRUSTED[n])


@given(
    attacker=st.lists(st.one_of(V4, TRUSTED_V4), max_size=4),
    client=UNTRUSTED_V4,
    proxies=st.lists(TRUSTED_V4, max_size=3),
)
def test_attacker_prefix_never_wins_over_the_real_client(
    attacker: list[ipaddress.IPv4Address],
    client: ipaddress.IPv4Address,
    proxies: list[ipaddress.IPv4Address],
) -> None:
    """Z5: whatever the client writes left of its own hop never becomes the resolved address."""
    header = ", ".join(str(a) for a in [*attacker, client, *proxies])
    resolver = ClientIPResolver([str(TRUSTED)])
    assert resolver.resolve(scope("192.168.0.1", ("x-forwarded-for", header))) == str(client)


@given(chain=st.lists(st.one_of(UNTRUSTED_V4, TRUSTED_V4), min_size=1, max_size=6))
def test_walk_matches_a_simple_right_to_left_oracle(chain: list[ipaddress.IPv4Address]) -> None:
    """Z5: the result is the rightmost untrusted hop, or the leftmost when all hops are trusted."""
    expected = next((a for a in reversed(chain) if a not in TRUSTED), chain[0])
    header = ", ".join(map(str, chain))
    resolver = ClientIPResolver([str(TRUSTED)])
    assert resolver.resolve(scope("192.168.0.1", ("x-forwarded-for", header))) == str(expected)


def test_peer_is_normalised_and_cached_on_the_context() -> None:
    """Z6: a mapped or zoned peer resolves to its plain form, once per request."""
    s = scope("::ffff:203.0.113.7")
    resolver = ClientIPResolver()
    assert resolver.resolve(s) == "203.0.113.7"
    s["client"] = ("198.51.100.1", 1)
    assert resolver.resolve(s) == "203.0.113.7"
    assert ClientIPResolver().resolve(scope("fe80::1%eth0")) == "fe80::1"
    assert ClientIPResolver().resolve(scope(None)) is None


def test_trust_all_warns_and_takes_the_leftmost_hop(caplog: pytest.LogCaptureFixture) -> None:
    """Z5: '*' logs the spoofing warning; every hop is then trusted, so the leftmost wins."""
    with caplog.at_level(logging.WARNING, logger="extapi_kit.clientip"):
        resolver = ClientIPResolver("*")
    assert any("spoof" in r.getMessage() or "any client" in r.getMessage() for r in caplog.records)
    s = scope("203.0.113.7", ("x-forwarded-for", "10.0.0.1, 198.51.100.9"))
    assert resolver.resolve(s) == "10.0.0.1"


def test_unsupported_forwarding_header_is_refused() -> None:
    """A header the resolver cannot parse is a configuration error."""
    with pytest.raises(ConfigurationError):
        ClientIPResolver(["10.0.0.1"], headers=["x-client-ip"])


def test_resolver_accepts_comma_separated_trusted_proxies() -> None:
    """Z5: ClientIPResolver("10.0.0.0/8,192.168.0.0/16") trusts both, like parse_networks does."""
    resolver = ClientIPResolver("10.0.0.0/8,192.168.0.0/16")
    assert resolver.resolve(scope("192.168.0.1", ("x-forwarded-for", "1.2.3.4"))) == "1.2.3.4"


def test_contains_unwraps_mapped_address_objects() -> None:
    """Z6: IPNetworkSet.contains(IPv6Address('::ffff:10.0.0.1')) matches 10.0.0.0/8 like text."""
    assert IPNetworkSet(["10.0.0.0/8"]).contains(ipaddress.ip_address("::ffff:10.0.0.1"))


def test_resolvers_with_different_trust_do_not_share_a_cached_answer() -> None:
    """Z5: a strict resolver never reuses the answer a trust-all resolver cached on the context."""
    s = scope("203.0.113.7", ("x-forwarded-for", "10.0.0.1"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logging.getLogger("extapi_kit.clientip"), "disabled", True)
        assert ClientIPResolver("*").resolve(s) == "10.0.0.1"
    assert ClientIPResolver().resolve(s) == "203.0.113.7"
