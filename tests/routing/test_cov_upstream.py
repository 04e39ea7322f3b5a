"""Upstream tools: configuration refused early, and header names that must not be reflected."""

from __future__ import annotations

import httpx
import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.upstream import Tool, response_headers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "ftp://tool.example/api"},
        {"base_url": "/relative/only"},
        {"base_url": "https://tool.example", "timeout": 0},
        {"base_url": "https://tool.example", "connect_timeout": -1},
    ],
)
def test_unusable_tool_configuration_is_refused(kwargs: dict[str, object]) -> None:
    """A13/W5: a tool with a non-http(s) URL or a non-positive deadline refuses to be built."""
    with pytest.raises(ConfigurationError, match="tool 'crm'"):
        Tool(name="crm", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [b"x-a:b", b"x-a\rb", b"x-a\nb"])
def test_upstream_header_name_with_separators_is_not_reflected(name: bytes) -> None:
    """W12: a header name carrying ':' or CR/LF (response splitting) makes the answer a 502."""
    response = httpx.Response(200, headers=[(b"content-type", b"text/plain"), (name, b"v")])
    assert response_headers(response) is None


def test_clean_upstream_headers_are_reflected_without_hop_by_hop() -> None:
    """A11/W12: ordinary headers pass (lower-cased); hop-by-hop ones are dropped."""
    response = httpx.Response(
        200, headers=[(b"Content-Type", b"text/plain"), (b"Connection", b"close"), (b"X-Req", b"1")]
    )
    got = response_headers(response)
    assert got is not None
    assert (b"content-type", b"text/plain") in got and (b"x-req", b"1") in got
    assert all(k != b"connection" for k, _ in got)
