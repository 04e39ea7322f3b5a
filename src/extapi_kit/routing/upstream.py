"""Upstream targets: an httpx reverse proxy to a registry of integrated tools.

The proxy never follows redirects (W4), ignores ``HTTP_PROXY`` and friends (``trust_env=False``,
W5), bounds the whole exchange by a total deadline on top of httpx's connect timeout (W6), caps
the response size (W7), streams bodies both ways, strips hop-by-hop headers both ways (RFC 9110
§7.6.1), never forwards the client's credentials (A11) and injects the tool's own. Upstream
header values with CR/LF/NUL or beyond the size caps are not reflected: 502 (W12).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from extapi_kit._types import Receive, Scope, Send
from extapi_kit._units import parse_size
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.problems import send_problem

__all__ = ["HOP_BY_HOP", "Tool", "UpstreamAbortedError", "proxy_request"]

logger = logging.getLogger("extapi_kit.routing.upstream")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy-connection",
    }
)
_CLIENT_ONLY = frozenset(
    {
        b"host",
        b"authorization",
        b"x-api-key",
        b"cookie",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        b"x-api-key-id",
        b"x-owner-id",
        b"x-user-id",
        b"x-scopes",
        b"x-resource-grants",
    }
)
# A tool never sets cookies on the public API's origin (a lenient parser may also have split
# one out of a bare-LF header value, W12). ``Date`` and ``Server`` describe the connection's own
# server (RFC 9110 §6.6.1, §10.2.4): the ASGI server in front (uvicorn) always adds its own, so
# relaying the tool's gave clients two of each (issue 18 §6), and the tool's ``Server`` named
# software behind the gateway that the public API need not reveal.
_RESPONSE_DROP = frozenset({b"set-cookie", b"set-cookie2", b"date", b"server"})
MAX_HEADER_VALUE = 8 * 1024
MAX_HEADERS_TOTAL = 64 * 1024
MAX_HEADER_COUNT = 100


class UpstreamAbortedError(Exception):
    """The upstream failed after the response started; the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class Tool:
    """An integrated upstream service reachable through the registry.

    Args:
        name: the tool id used in routes (``/tools/{tool_id}/...``).
        base_url: the upstream base URL (``https://tool.example/api``).
        enabled: a disabled tool answers 503.
        header_name: header carrying the credential; ``Authorization`` sends ``Bearer <cred>``.
        credential: the secret, or a callable returning it (for rotation); never logged.
        timeout: total deadline of one exchange in seconds, response body included.
        connect_timeout: TCP/TLS connect deadline in seconds.
        max_response_bytes: response body cap (``"10MiB"`` or bytes).
    """

    name: str
    base_url: str
    enabled: bool = True
    header_name: str | None = "Authorization"
    credential: str | Callable[[], str] | None = field(default=None, repr=False)
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_response_bytes: int | str = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        url = httpx.URL(self.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"tool {self.name!r}: base_url must be an http(s) URL")
        object.__setattr__(self, "max_response_bytes", parse_size(self.max_response_bytes))
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigurationError(f"tool {self.name!r}: timeouts must be positive")

    def credential_header(self) -> tuple[bytes, bytes] | None:
        """Return the injected credential header, or None."""
        if self.credential is None or not self.header_name:
            return None
        secret = self.credential() if callable(self.credential) else self.credential
        name = self.header_name.lower().encode("latin-1")
        value = f"Bearer {secret}" if name == b"authorization" else secret
        return name, value.encode("latin-1")


def _connection_listed(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed: set[bytes] = set()
    for k, v in headers:
        if k.lower() == b"connection":
            listed.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return frozenset(listed)


def request_headers(scope: Scope, tool: Tool) -> list[tuple[bytes, bytes]]:
    """Return the headers sent upstream: client headers minus hop-by-hop and credentials.

    Args:
        scope: the client request scope.
        tool: the target tool (its credential is injected).
    """
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
    drop = HOP_BY_HOP | _CLIENT_ONLY | _connection_listed(raw)
    out = [(k, v) for k, v in raw if k.lower() not in drop]
    cred = tool.credential_header()
    if cred is not None:
        out = [(k, v) for k, v in out if k.lower() != cred[0]]
        out.append(cred)
    return out


def response_headers(response: httpx.Response) -> list[tuple[bytes, bytes]] | None:
    """Return upstream response headers safe to reflect, or None when they must not be (W12).

    Args:
        response: the streamed upstream response (headers only read).
    """
    raw = response.headers.raw
    if len(raw) > MAX_HEADER_COUNT:
        return None
    total = 0
    for k, v in raw:
        total += len(k) + len(v)
        if len(v) > MAX_HEADER_VALUE or b"\r" in v or b"\n" in v or b"\x00" in v:
            return None
        if b"\r" in k or b"\n" in k or b":" in k:
            return None
    if total > MAX_HEADERS_TOTAL:
        return None
    names = {k.lower() for k, _ in raw}
    if b"transfer-encoding" in names and b"content-length" in names:
        # RFC 9112 §6.1: both framings at once is a smuggling signal, not something to relay.
        return None
    drop = HOP_BY_HOP | _RESPONSE_DROP | _connection_listed(list(raw))
    return [(k.lower(), v) for k, v in raw if k.lower() not in drop]


async def _client_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UpstreamAbortedError("client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def proxy_request(
    client: httpx.AsyncClient,
    tool: Tool,
    url: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    body: bytes | None = None,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Proxy one request to ``url`` on ``tool`` and stream the answer back.

    Args:
        client: the shared httpx client (``trust_env=False``, no redirects).
        tool: the tool (credential, deadlines, caps).
        url: the full upstream URL, query string included.
        scope: the client request scope.
        receive: the client receive (streamed upstream unless ``body`` is given).
        send: the client send.
        body: an already-read (validated) body, or None to stream.
        extra_headers: headers to add to the client response (deprecation).
    """
    headers = request_headers(scope, tool)
    content: bytes | AsyncIterator[bytes]
    if body is not None:
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        content = body
    else:
        content = _client_body(receive)
    timeout = httpx.Timeout(tool.timeout, connect=tool.connect_timeout)
    request = client.build_request(
        scope["method"], url, headers=headers, content=content, timeout=timeout
    )
    started = False
    cap = int(tool.max_response_bytes)
    try:
        # One deadline over the whole exchange: httpx's timeouts are per read, so a server that
        # drips one byte per second would otherwise never time out (W6).
        with anyio.fail_after(tool.timeout):
            response = await client.send(request, stream=True)
            try:
                out_headers = response_headers(response)
                if out_headers is None:
                    logger.warning("tool %s sent unsafe response headers", tool.name)
                    await send_problem(
                        send, "bad-gateway", "invalid upstream response", scope=scope
                    )
                    return
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > cap:
                    await send_problem(
                        send, "bad-gateway", "upstream response too large", scope=scope
                    )
                    return
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [*out_headers, *extra_headers],
                    }
                )
                started = True
                seen = 0
                if scope["method"] != "HEAD":
                    async for chunk in response.aiter_raw():
                        seen += len(chunk)
                        if seen > cap:
                            raise UpstreamAbortedError("upstream response over the size cap")
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()
    except UpstreamAbortedError:
        if started:
            raise
        # The client went away before an answer started: nothing to send to anyone.
    except (TimeoutError, httpx.TimeoutException):
        if started:
            raise UpstreamAbortedError("upstream deadline exceeded") from None
        await send_problem(send, "gateway-timeout", "upstream did not answer in time", scope=scope)
    except httpx.HTTPError as exc:
        if started:
            raise UpstreamAbortedError("upstream failed mid-response") from exc
        logger.warning("tool %s failed: %s", tool.name, type(exc).__name__)
        await send_problem(send, "bad-gateway", "upstream request failed", scope=scope)


def build_url(tool: Tool, path: str, query_string: bytes) -> str:
    """Join the tool's base URL, the rendered (percent-encoded) path and the raw query string.

    Args:
        tool: the tool.
        path: the encoded path, starting with ``/``.
        query_string: ``scope["query_string"]``.
    """
    url = tool.base_url.rstrip("/") + path
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


def tools_from_mapping(tools: Mapping[str, Any]) -> dict[str, Tool]:
    """Build tools from ``{name: {base_url: ..., ...}}`` configuration.

    Args:
        tools: mapping of tool name to keyword arguments of :class:`Tool`.
    """
    return {name: Tool(name=name, **dict(opts)) for name, opts in tools.items()}
