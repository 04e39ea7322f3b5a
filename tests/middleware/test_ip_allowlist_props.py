"""Property tests: the allowlist's decision equals an ipaddress-based oracle (Z6, deny wins)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
MAPPED = V4.map(lambda a: ipaddress.IPv6Address((0xFFFF << 32) | int(a)))
# Small v4 universe so that allow, deny and the address overlap often.
SMALL_V4 = st.integers(0, 255).map(lambda n: ipaddress.IPv4Address(0x0A000000 | n))
NETS = st.one_of(
    st.tuples(SMALL_V4, st.integers(24, 32)),
    st.tuples(V4, st.integers(0, 32)),
    st.tuples(V6, st.integers(0, 128)),
).map(lambda t: ipaddress.ip_network(t, strict=False))


def unwrap(addr: Address) -> Address:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def member(addr: Address, nets: list[Network]) -> bool:
    a = unwrap(addr)
    return any(a.version == n.version and a in n for n in nets)


async def noop(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def decide(app: IPAllowlistMiddleware, peer: str) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        sent.append(message)

    coro = app({"type": "http", "path": "/", "headers": [], "client": (peer, 1)}, receive, send)
    try:
        coro.send(None)
    except StopIteration:
        pass
    status: int = sent[0]["status"]
    return status


@given(
    allow=st.lists(NETS, max_size=6),
    deny=st.lists(NETS, max_size=6),
    addr=st.one_of(SMALL_V4, V4, V6, SMALL_V4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))),
)
def test_decision_matches_oracle(allow: list[Network], deny: list[Network], addr: Address) -> None:
    """Z6: 403 iff denied, or an allow list exists and the (unwrapped) address is not in it."""
    app = IPAllowlistMiddleware(
        noop, allow=[str(n) for n in allow], deny=[str(n) for n in deny] or ["0.0.0.0/32"]
    )
    effective_deny = deny or [ipaddress.ip_network("0.0.0.0/32")]
    refused = member(addr, effective_deny) or (bool(allow) and not member(addr, allow))
    assert decide(app, str(addr)) == (403 if refused else 200)


@given(addr=V4)
def test_mapped_spelling_gets_the_same_decision_as_plain_ipv4(addr: ipaddress.IPv4Address) -> None:
    """Z6: ::ffff:a.b.c.d and a.b.c.d are always decided alike."""
    app = IPAllowlistMiddleware(noop, allow=["10.0.0.0/8", "192.0.2.0/24"], deny=["10.9.0.0/16"])
    assert decide(app, f"::ffff:{addr}") == decide(app, str(addr))
