"""IPAllowlistMiddleware: allow/deny lists, trusted proxies (Z5), normalisation (Z6), A13."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from extapi_kit import ClientIPResolver, ConfigurationError, RouteSettings, get_context
from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware
from extapi_kit.problems import problem_app

pytestmark = pytest.mark.anyio


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    ip = get_context(scope).client_ip or "-"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": ip.encode()})


async def get(
    app: ASGIApp,
    peer: str = "203.0.113.7",
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app, client=(peer, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_allow_list_admits_members_and_refuses_others_with_problem() -> None:
    """A 403 ip-not-allowed problem for a non-member that echoes neither lists nor address."""
    app = IPAllowlistMiddleware(ok_app, allow=["203.0.113.0/24", "2001:db8::/32"])
    assert (await get(app, "203.0.113.200")).text == "203.0.113.200"
    assert (await get(app, "2001:db8::1")).status_code == 200
    refused = await get(app, "198.51.100.9")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/ip-not-allowed")
    for leak in ("198.51.100.9", "203.0.113", "2001:db8"):
        assert leak not in refused.text


async def test_deny_wins_over_allow() -> None:
    """A denied address inside an allowed range is refused."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], deny=["10.1.2.3", "10.9.0.0/16"])
    assert (await get(app, "10.1.2.4")).status_code == 200
    assert (await get(app, "10.1.2.3")).status_code == 403
    assert (await get(app, "10.9.200.1")).status_code == 403


async def test_empty_allow_admits_everyone_not_denied() -> None:
    """Empty allow = every address that is not denied."""
    app = IPAllowlistMiddleware(ok_app, allow=[], deny=["192.0.2.0/24"])
    assert (await get(app, "198.51.100.1")).status_code == 200
    assert (await get(app, "192.0.2.1")).status_code == 403


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored() -> None:
    """Z5: an untrusted peer claiming an allowlisted X-Forwarded-For/Forwarded address gets 403."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], trusted_proxies=["192.168.1.1"])
    spoof = {"x-forwarded-for": "10.0.0.1", "forwarded": "for=10.0.0.1"}
    assert (await get(app, "203.0.113.7", headers=spoof)).status_code == 403


async def test_trusted_proxy_hop_is_walked_right_to_left() -> None:
    """Z5: behind a trusted proxy the rightmost untrusted hop decides, not the leftmost."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], trusted_proxies=["192.168.1.0/24"])
    real = await get(app, "192.168.1.1", headers={"x-forwarded-for": "10.0.0.1"})
    assert (real.status_code, real.text) == (200, "10.0.0.1")
    # The attacker (198.51.100.9) prepends an allowlisted address; the proxy appends the truth.
    spoof = {"x-forwarded-for": "10.0.0.1, 198.51.100.9, 192.168.1.2"}
    assert (await get(app, "192.168.1.1", headers=spoof)).status_code == 403


async def test_missing_trusted_proxy_config_fails_closed() -> None:
    """A13/Z5: behind a proxy but without trusted_proxies, the proxy's own address is judged."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"])
    response = await get(app, "192.168.1.1", headers={"x-forwarded-for": "10.0.0.1"})
    assert response.status_code == 403


async def test_trust_all_logs_spoofing_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Z5: trusted_proxies='*' logs a startup warning about spoofing."""
    with caplog.at_level(logging.WARNING, logger="extapi_kit"):
        IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], trusted_proxies="*")
    assert any("X-Forwarded-For" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("::ffff:10.0.0.1", True),
        ("::ffff:11.0.0.1", False),
        ("fe80::1%eth0", False),
        ("2001:db8::10", False),
        ("10.0.0.1", True),
    ],
)
async def test_addresses_are_normalised_before_matching(peer: str, allowed: bool) -> None:
    """Z6: IPv4-mapped IPv6 matches like plain IPv4; an IPv6 peer never matches an IPv4 CIDR."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"])
    assert ((await get(app, peer)).status_code == 200) is allowed


async def test_zone_id_is_stripped_before_matching() -> None:
    """Z6: fe80::1%eth0 is matched as fe80::1 against a link-local allowlist."""
    app = IPAllowlistMiddleware(ok_app, allow=["fe80::/10"], deny=["fe80::dead"])
    assert (await get(app, "fe80::1%eth0")).status_code == 200
    assert (await get(app, "fe80::dead%eth1")).status_code == 403


async def test_mapped_ipv6_in_forwarded_for_is_unwrapped() -> None:
    """Z6: a trusted proxy reporting [::ffff:10.0.0.1]:443 in Forwarded yields 10.0.0.1."""
    resolver = ClientIPResolver(["::1"], headers=["forwarded"])
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], client_ip=resolver)
    response = await get(app, "::1", headers={"forwarded": 'for="[::ffff:10.0.0.1]:443"'})
    assert (response.status_code, response.text) == (200, "10.0.0.1")


async def scope_call(app: ASGIApp, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_unresolvable_client_is_refused_when_an_allow_list_applies() -> None:
    """A13: no client address + a global or route allow list -> 403; deny-only lets it pass."""
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    sent = await scope_call(IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"]), scope)
    assert sent[0]["status"] == 403
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    get_context(scope).route = RouteSettings(template="/", ip_allow=("10.0.0.0/8",))
    sent = await scope_call(IPAllowlistMiddleware(ok_app, deny=["192.0.2.1"]), scope)
    assert sent[0]["status"] == 403
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    sent = await scope_call(IPAllowlistMiddleware(ok_app, deny=["192.0.2.1"]), scope)
    assert sent[0]["status"] == 200


async def test_route_allow_list_is_enforced_in_addition_to_global_lists() -> None:
    """Per-route lists from RouteSettings.ip_allow narrow the global allow list."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"])
    route = RouteSettings(template="/admin", ip_allow=("10.1.0.0/16",))
    for peer, status in (("10.1.2.3", 200), ("10.2.0.1", 403), ("192.0.2.1", 403)):
        scope: Scope = {"type": "http", "path": "/admin", "headers": [], "client": (peer, 1)}
        get_context(scope).route = route
        assert (await scope_call(app, scope))[0]["status"] == status


async def test_websocket_from_denied_network_is_closed_1008_before_accept() -> None:
    """Z7-style: a refused websocket is closed with policy violation and never reaches the app."""
    reached: list[str] = []

    async def ws_app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["type"])

    app = IPAllowlistMiddleware(ws_app, allow=["10.0.0.0/8"])
    refused: Scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("1.2.3.4", 1)}
    assert await scope_call(app, refused) == [
        {"type": "websocket.close", "code": 1008, "reason": "ip not allowed"}
    ]
    admitted: Scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("10.0.0.1", 1)}
    await scope_call(app, admitted)
    assert reached == ["websocket"]
    assert get_context(refused).rejection == "ip-not-allowed"


async def test_lifespan_passes_through_untouched() -> None:
    """M5: the lifespan scope reaches the app unchanged (no context, no header access)."""
    reached: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(dict(scope))

    await scope_call(IPAllowlistMiddleware(app, allow=["10.0.0.0/8"]), {"type": "lifespan"})
    assert reached == [{"type": "lifespan"}]


async def test_exempt_paths_skip_the_check_per_segment() -> None:
    """Exempt paths (health checks) are matched per segment: /health/live yes, /healthz no."""
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], exempt_paths=["/health"])
    assert (await get(app, path="/health")).status_code == 200
    assert (await get(app, path="/health/live")).status_code == 200
    assert (await get(app, path="/healthz")).status_code == 403


async def test_on_reject_hook_answers_instead_of_default_problem() -> None:
    """The on_reject hook's ASGI app answers a refusal; the context still names the rejection."""
    seen: list[str | None] = []

    def on_reject(scope: Scope) -> ASGIApp:
        seen.append(get_context(scope).rejection)
        return problem_app("not-found")

    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], on_reject=on_reject)
    assert (await get(app)).status_code == 404
    assert seen == ["ip-not-allowed"]


async def test_shared_resolver_is_used() -> None:
    """The client_ip resolver instance given is the one that decides."""
    resolver = ClientIPResolver(["192.168.1.1"])
    app = IPAllowlistMiddleware(ok_app, allow=["10.0.0.0/8"], client_ip=resolver)
    assert app.resolver is resolver
    response = await get(app, "192.168.1.1", headers={"x-forwarded-for": "10.0.0.9"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"allow": ["10.0.0.0/33"]}, "10.0.0.0/33"),
        ({"deny": ["not-an-ip"]}, "not-an-ip"),
        ({"allow": ["10.0.0.1", "300.1.1.1"]}, "300.1.1.1"),
        ({"trusted_proxies": ["proxy.local"]}, "proxy.local"),
        ({"exempt_paths": ["health"]}, "health"),
    ],
)
def test_bad_entries_raise_configuration_error_naming_them(
    kwargs: dict[str, list[str]], named: str
) -> None:
    """A bad list entry refuses to start with a ConfigurationError that names the entry."""
    with pytest.raises(ConfigurationError, match=named):
        IPAllowlistMiddleware(ok_app, **kwargs)  # type: ignore[arg-type]


def test_resolver_and_trusted_proxies_together_is_a_configuration_error() -> None:
    """Two sources of proxy trust are ambiguous: refuse to start."""
    with pytest.raises(ConfigurationError):
        IPAllowlistMiddleware(ok_app, trusted_proxies=["10.0.0.1"], client_ip=ClientIPResolver())


def test_no_lists_at_all_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A13: a middleware with no global list says that only per-route lists apply."""
    with caplog.at_level(logging.WARNING, logger="extapi_kit"):
        IPAllowlistMiddleware(ok_app, allow=[])
    assert any("no allow or deny list" in r.getMessage() for r in caplog.records)


async def chunked(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 65536):
        yield b"x" * 65536


def load_example() -> ASGIApp:
    path = Path(__file__).parents[2] / "examples" / "guards_app.py"
    spec = importlib.util.spec_from_file_location("guards_app_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app: ASGIApp = module.app
    return app


async def test_example_app_cors_preflight_needs_no_allowlisted_address() -> None:
    """docs: CORS outside the guards answers preflights; guarded routes still refuse outsiders."""
    app = load_example()
    preflight = {"origin": "https://app.example.com", "access-control-request-method": "POST"}
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answered = await client.options("/api/echo", headers=preflight)
        refused = await client.post("/api/echo", content=b"hi")
        health = await client.get("/health")
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "https://app.example.com"
    assert refused.status_code == 403
    assert health.status_code == 200
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        echoed = await client.post("/api/echo", content=b"hi")
        too_big = await client.post("/api/echo", content=chunked(32 * 65536))
    assert echoed.json() == {"size": 2, "client": "127.0.0.1"}
    assert too_big.status_code == 413
