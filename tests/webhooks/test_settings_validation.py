"""Every webhook setting is bounded where it enters the Python API (W14, M10)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from extapi_kit.exceptions import ConfigurationError, UnsafeURLError
from extapi_kit.webhooks import RetryPolicy, WebhookDispatcher, WebhookManager
from extapi_kit.webhooks._validation import MAX_SECRET_GRACE
from extapi_kit.webhooks.ssrf import URLGuard, URLRejectedError
from extapi_kit.webhooks.store_memory import MemoryWebhookStore

pytestmark = pytest.mark.anyio
BAD_PORTS = ("99999", "65536", "0")


@pytest.mark.parametrize("port", BAD_PORTS)
def test_guard_refuses_ports_no_socket_accepts(port: str) -> None:
    """W14: a URL with port 0 or above 65535 is refused at registration, naming the port."""
    with pytest.raises(URLRejectedError) as info:
        URLGuard().check_syntax(f"http://93.184.216.34:{port}/hook")
    assert info.value.reason == "invalid_port" and "port" in str(info.value)
    URLGuard().check_syntax("http://93.184.216.34:65535/hook")  # the top port is fine


@pytest.mark.parametrize("port", BAD_PORTS)
async def test_manager_refuses_bad_ports_on_add_and_update(port: str) -> None:
    """W14: WebhookManager.add_endpoint and update_endpoint refuse an impossible port."""
    manager = WebhookManager(MemoryWebhookStore())
    url = f"http://93.184.216.34:{port}/hook"
    with pytest.raises(UnsafeURLError, match="port"):
        await manager.add_endpoint(url)
    ep = await manager.add_endpoint("https://example.com/hook")
    with pytest.raises(UnsafeURLError, match="port"):
        await manager.update_endpoint(ep.id, url=url)
    assert (await manager.get_endpoint(ep.id)).url == "https://example.com/hook"
    assert len(await manager.list_endpoints()) == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rate_limit", math.inf),
        ("rate_limit", 1e308),
        ("rate_limit", math.nan),
        ("rate_limit", 1e-300),
        ("rate_limit", 0),
        ("max_concurrency", 10**12),
        ("max_concurrency", 0),
    ],
)
async def test_manager_refuses_unbounded_endpoint_settings(option: str, value: Any) -> None:
    """M10: rate_limit and max_concurrency out of bounds are refused naming the field."""
    manager = WebhookManager(MemoryWebhookStore())
    with pytest.raises(ConfigurationError, match=option):
        await manager.add_endpoint("https://example.com/a", **{option: value})
    ep = await manager.add_endpoint("https://example.com/b")
    with pytest.raises(ConfigurationError, match=option):
        await manager.update_endpoint(ep.id, **{option: value})
    assert (await manager.get_endpoint(ep.id)).rate_limit is None


@pytest.mark.parametrize("grace", [1e308, math.inf, math.nan, -1, MAX_SECRET_GRACE + 1])
async def test_rotation_grace_is_bounded(grace: float) -> None:
    """M10: a rotation grace above 30 days (1e308: old secrets never expire) is refused."""
    manager = WebhookManager(MemoryWebhookStore())
    ep = await manager.add_endpoint("https://example.com/hook")
    with pytest.raises(ConfigurationError, match="grace"):
        await manager.rotate_secret(ep.id, grace=grace)
    assert len((await manager.get_endpoint(ep.id)).secrets) == 1
    await manager.rotate_secret(ep.id, grace=MAX_SECRET_GRACE)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", 0),
        ("concurrency", 10**9),
        ("per_endpoint_concurrency", 10**9),
        ("lease_seconds", math.inf),
        ("lease_seconds", math.nan),
        ("poll_interval", math.inf),
        ("poll_interval", 0),
        ("disable_after", math.inf),
        ("disable_after", 1e308),
        ("endpoint_cache_ttl", math.inf),
        ("endpoint_cache_ttl", -1),
    ],
)
def test_dispatcher_config_is_bounded(option: str, value: Any) -> None:
    """M10: dispatcher settings that would be silently ignored (inf, NaN, huge) are refused."""
    with pytest.raises(ConfigurationError, match=option):
        WebhookDispatcher(MemoryWebhookStore(), **{option: value})


@pytest.mark.parametrize(
    "options",
    [
        {"schedule": (0, math.inf)},
        {"schedule": (0, math.nan)},
        {"max_retry_after": math.inf},
        {"throttle_multiplier": math.inf},
    ],
)
def test_retry_policy_refuses_infinite_delays(options: dict[str, Any]) -> None:
    """M10: a retry schedule or cap of inf/NaN (a retry never made) is refused."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**options)
