"""The HTTP half of a delivery attempt: one guarded, pinned, deadline-bound POST.

Every send re-checks the URL with the :class:`~extapi_kit.webhooks.ssrf.URLGuard` and connects to
one of the addresses the guard just checked: the URL's host is rewritten to the IP, ``Host`` keeps
the original name and, for HTTPS, the ``sni_hostname`` extension keeps SNI and certificate checks on
the name (anchors-reliability W3). httpx timeouts are per operation, so a receiver dripping one byte
a second never trips them; an outer ``asyncio.timeout`` bounds the whole exchange including the
body read (W6, §0.9). The response is streamed and at most ``max_response_bytes`` are read (W7).
Redirects are failures and are not followed (W4); proxies from the environment are ignored (W5).
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import http.cookiejar
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from extapi_kit.exceptions import UnsafeURLError
from extapi_kit.webhooks.ssrf import IPAddress, UnresolvableHostError, URLGuard

__all__ = ["AttemptResult", "WebhookSender", "parse_retry_after"]

TRUNCATED_MARKER = "\n...[truncated]"
# HTTPS connections are pooled per host name: httpcore pools by origin (here the IP), so without
# this a TLS connection opened with one SNI could carry a request for another name on the same IP.
_MAX_TLS_HOSTS = 256
_MAX_HEADERS = 64
_MAX_HEADER_VALUE = 1024
# Framing and routing headers are the sender's business, never the caller's.
_RESERVED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)


@dataclass
class AttemptResult:
    """The outcome of one HTTP attempt.

    Args:
        status: the HTTP status, or None when no response arrived.
        duration: seconds from the start of the attempt to its end.
        response_excerpt: the start of the response body (at most ``max_response_bytes``).
        response_headers: response headers, lowercase names.
        error: ``dns_error``, ``connection_refused``, ``connection_error``, ``timeout``,
            ``tls_error``, ``ssrf_blocked``, ``redirect``, ``response_too_large`` or None.
        retry_after: the ``Retry-After`` delay in seconds, when the receiver sent one.
    """

    status: int | None
    duration: float
    response_excerpt: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer with no error."""
        return self.error is None and self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Parse ``Retry-After`` (RFC 9110 §10.2.3): delta seconds or an HTTP date.

    Args:
        value: the header value.
        now: the current Unix time, for HTTP dates.

    Returns:
        The delay in seconds (never negative), or None when absent or unparseable.
    """
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class _Progress:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False


@dataclass
class _TLSClient:
    client: httpx.AsyncClient
    inflight: int = 0
    evicted: bool = False


def _classify(exc: BaseException) -> str:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    found = "connection_error"
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return "tls_error"
        if (
            isinstance(cur, ConnectionRefusedError)
            or getattr(cur, "errno", None) == errno.ECONNREFUSED
        ):
            found = "connection_refused"
        if isinstance(cur, BaseExceptionGroup):
            stack.extend(cur.exceptions)
        for nxt in (cur.__cause__, cur.__context__):
            if nxt is not None:
                stack.append(nxt)
    return found


class WebhookSender:
    """Sends one webhook POST at a time per call, safely; share one instance per process.

    Args:
        guard: the SSRF guard (default: ``URLGuard()``, which denies loopback and private ranges).
        timeout: total deadline in seconds for one attempt, from DNS to the last body byte read.
        connect_timeout: deadline for the TCP (and TLS) connect.
        max_response_bytes: at most this many response body bytes are read and kept.
        user_agent: the ``User-Agent`` header.
        max_connections: connection pool size (for plain HTTP, and per host name for HTTPS).
    """

    def __init__(
        self,
        *,
        guard: URLGuard | None = None,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        max_response_bytes: int = 20_000,
        user_agent: str = "extapi-kit-webhooks/0.1",
        max_connections: int = 100,
    ) -> None:
        self._guard = guard or URLGuard()
        self._deadline = timeout
        self._timeout = httpx.Timeout(timeout, connect=min(connect_timeout, timeout))
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self._max_response_bytes = max_response_bytes
        self._user_agent = user_agent
        self._ssl: ssl.SSLContext | None = None
        self._http = self._new_client()
        self._tls: OrderedDict[str, _TLSClient] = OrderedDict()
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookSender(guard={self._guard!r}, timeout={self._deadline})"

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        if self._ssl is None:
            # One verifying context for every pool; environment variables are not consulted (W5).
            self._ssl = httpx.create_ssl_context(verify=True, trust_env=False)
        # A jar that accepts nothing: a receiver's cookies must never reach another endpoint.
        jar = http.cookiejar.CookieJar(
            policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
        )
        return httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            verify=self._ssl,
            timeout=self._timeout,
            limits=self._limits,
            cookies=jar,
        )

    async def _acquire_tls(self, host: str) -> _TLSClient:
        entry = self._tls.get(host)
        if entry is None:
            entry = _TLSClient(self._new_client())
            self._tls[host] = entry
            while len(self._tls) > _MAX_TLS_HOSTS:
                _, old = self._tls.popitem(last=False)
                old.evicted = True
                if old.inflight == 0:
                    await old.client.aclose()
        else:
            self._tls.move_to_end(host)
        entry.inflight += 1
        return entry

    async def _release_tls(self, entry: _TLSClient) -> None:
        entry.inflight -= 1
        if entry.evicted and entry.inflight == 0:
            await entry.client.aclose()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST ``body`` to ``url``; never raises for network problems.

        Args:
            url: the endpoint URL (checked by the guard on every call).
            headers: request headers, e.g. the signature headers (``Host`` is always replaced).
            body: the exact body bytes.
        """
        start = time.perf_counter()
        progress = _Progress()
        error: str | None = None
        try:
            async with asyncio.timeout(self._deadline):
                await self._exchange(url, headers, body, progress)
        except TimeoutError:
            error = "timeout"
        except UnresolvableHostError:
            error = "dns_error"
        except UnsafeURLError:
            error = "ssrf_blocked"
        except httpx.TimeoutException:
            error = "timeout"
        except (httpx.TransportError, OSError) as exc:
            error = _classify(exc)
        duration = time.perf_counter() - start
        status = progress.status
        if error is None and status is not None and 300 <= status < 400:
            error = "redirect"  # Standard Webhooks: 3xx is a failure; never followed (W4)
        excerpt = progress.body.decode("utf-8", "replace")
        if progress.truncated:
            excerpt += TRUNCATED_MARKER
        return AttemptResult(
            status=status,
            duration=duration,
            response_excerpt=excerpt,
            response_headers=progress.headers,
            error=error,
            retry_after=parse_retry_after(progress.headers.get("retry-after"), now=time.time()),
        )

    async def _exchange(
        self, url: str, headers: Mapping[str, str], body: bytes, progress: _Progress
    ) -> None:
        target = await self._guard.check(url)
        original = httpx.URL(url)
        last_error: Exception | None = None
        for addr in target.addresses:
            try:
                await self._post(
                    target.scheme, target.host, addr, original, headers, body, progress
                )
                return
            except httpx.ConnectError as exc:
                # Try the next checked address on a failed connect (e.g. no IPv6 route), but not
                # after a TLS failure, which another address of the same name would repeat.
                if _classify(exc) == "tls_error":
                    raise
                last_error = exc
        if last_error is not None:
            raise last_error

    async def _post(
        self,
        scheme: str,
        host: str,
        addr: IPAddress,
        original: httpx.URL,
        headers: Mapping[str, str],
        body: bytes,
        progress: _Progress,
    ) -> None:
        request_headers = {
            "user-agent": self._user_agent,
            "content-type": "application/json",
            # Compressed bodies could expand far beyond the read cap; ask for none.
            "accept-encoding": "identity",
        }
        for name, value in headers.items():
            if name.lower() not in _RESERVED:
                request_headers[name.lower()] = value
        request_headers["host"] = original.netloc.decode("ascii")
        extensions: dict[str, str] = {}
        literal = str(addr) == host
        if scheme == "https" and not literal:
            extensions["sni_hostname"] = host
        pinned = original.copy_with(host=str(addr))
        entry = await self._acquire_tls(host) if scheme == "https" else None
        client = entry.client if entry is not None else self._http
        try:
            request = client.build_request(
                "POST", pinned, headers=request_headers, content=body, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                progress.status = response.status_code
                progress.headers = _capture_headers(response.headers)
                await self._read_capped(response, progress)
            finally:
                await response.aclose()
        finally:
            if entry is not None:
                await self._release_tls(entry)

    async def _read_capped(self, response: httpx.Response, progress: _Progress) -> None:
        cap = self._max_response_bytes
        async for chunk in response.aiter_raw():
            room = cap - len(progress.body)
            if len(chunk) > room:
                progress.body += chunk[:room]
                progress.truncated = True
                return  # the rest is never read; closing the response drops the connection
            progress.body += chunk

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._closed:
            return
        self._closed = True
        await self._http.aclose()
        entries = list(self._tls.values())
        self._tls.clear()
        for entry in entries:
            await entry.client.aclose()


def _capture_headers(headers: httpx.Headers) -> dict[str, str]:
    captured: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        if key not in captured and len(captured) >= _MAX_HEADERS:
            continue
        value = value[:_MAX_HEADER_VALUE]
        captured[key] = f"{captured[key]}, {value}" if key in captured else value
    return captured
