"""The HTTP half of a delivery attempt: one guarded, pinned, deadline-bound POST.

Every send re-checks the URL with the :class:`~extapi_kit.webhooks.ssrf.URLGuard` and connects to
one of the addresses the guard just checked, never resolving the name again: ``Host`` keeps the
original netloc and, for HTTPS, SNI and the certificate check use the name (anchors-reliability
W3). One ``asyncio.timeout`` bounds the whole exchange, connect to last body byte, so a receiver
dripping one byte a second cannot hold an attempt longer (W6, §0.9). At most
``max_response_bytes`` of the body are read, then the connection is dropped (W7). Redirects are
failures and are not followed (W4); no proxy, cookie or CA setting is taken from the environment
(W5). The wire work (h11 over asyncio streams and a keep-alive pool keyed by IP and name) lives in
``_http11``.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import functools
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import certifi
import h11
import httpx

from extapi_kit.exceptions import UnsafeURLError
from extapi_kit.webhooks._http11 import (
    Connection,
    ConnectionPool,
    PoolKey,
    Progress,
    StaleConnectionError,
    open_connection,
)
from extapi_kit.webhooks.ssrf import (
    ResolvedTarget,
    UnresolvableHostError,
    URLGuard,
    URLRejectedError,
)

__all__ = ["AttemptResult", "WebhookSender", "parse_retry_after"]

logger = logging.getLogger("extapi_kit.webhooks")

# Guard reasons reported as ``invalid_url``: a URL no send can ever use (a stored port outside
# 1-65535). Unparseable hosts stay ``ssrf_blocked``: some are odd spellings of loopback.
_MALFORMED = frozenset({"invalid_port"})
TRUNCATED_MARKER = "\n...[truncated]"
_KEEPALIVE_EXPIRY = 30.0
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
            ``tls_error``, ``ssrf_blocked``, ``invalid_url``, ``redirect``,
            ``response_too_large``, ``internal_error`` or None.
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

    Connections are kept alive and reused per (scheme, checked IP, port, host name), so a TLS
    connection verified for one name never carries a request for another.

    Args:
        guard: the SSRF guard (default: ``URLGuard()``, which denies loopback and private ranges).
        timeout: total deadline in seconds for one attempt, from DNS to the last body byte read.
        connect_timeout: deadline for the TCP (and TLS) connect.
        max_response_bytes: at most this many response body bytes are read and kept.
        user_agent: the ``User-Agent`` header.
        max_connections: the most idle keep-alive connections kept (least recently used closed
            first; idle ones are closed after 30 s). Attempts in flight are bounded by the caller
            (the dispatcher's ``concurrency``).
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
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_response_bytes = max_response_bytes
        self._user_agent = user_agent
        self._ssl: ssl.SSLContext | None = None
        self._pool = ConnectionPool(max_idle=max_connections, expiry=_KEEPALIVE_EXPIRY)
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookSender(guard={self._guard!r}, timeout={self._deadline})"

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # certifi's bundle, as httpx used: SSL_CERT_FILE/SSL_CERT_DIR are not consulted (W5).
            context = ssl.create_default_context(cafile=certifi.where())
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST ``body`` to ``url``; never raises: every failure is an ``error`` class.

        Args:
            url: the endpoint URL (checked by the guard on every call).
            headers: request headers, e.g. the signature headers (``Host`` is always replaced).
            body: the exact body bytes.

        Raises:
            RuntimeError: after :meth:`aclose`.
        """
        if self._closed:
            raise RuntimeError("the WebhookSender is closed")
        start = time.perf_counter()
        progress = Progress()
        error: str | None = None
        try:
            async with asyncio.timeout(self._deadline):
                await self._exchange(url, headers, body, progress)
        except TimeoutError:
            error = "timeout"
        except UnresolvableHostError:
            error = "dns_error"
        except URLRejectedError as exc:
            error = "invalid_url" if exc.reason in _MALFORMED else "ssrf_blocked"
        except UnsafeURLError:
            error = "ssrf_blocked"
        except h11.ProtocolError:
            error = "connection_error"
        except OSError as exc:
            error = _classify(exc)
        except Exception as exc:
            # Documented never to raise: anything else (an OverflowError from a port stored
            # before registration checked it, a bug) is a failed attempt too (W14).
            logger.warning("webhook send failed internally (%s)", type(exc).__name__)
            error = "internal_error"
        duration = time.perf_counter() - start
        status = progress.status
        if error is None and status is not None and 300 <= status < 400:
            error = "redirect"  # Standard Webhooks: 3xx is a failure; never followed (W4)
        excerpt = progress.body.decode("utf-8", "replace")
        if progress.truncated:
            excerpt += TRUNCATED_MARKER
        captured = _capture_headers(progress.raw_headers)
        return AttemptResult(
            status=status,
            duration=duration,
            response_excerpt=excerpt,
            response_headers=captured,
            error=error,
            retry_after=parse_retry_after(captured.get("retry-after"), now=time.time()),
        )

    async def _exchange(
        self, url: str, headers: Mapping[str, str], body: bytes, progress: Progress
    ) -> None:
        target = await self._guard.check(url)
        host_header, path = _url_parts(url)
        head = h11.Request(
            method="POST", target=path, headers=self._request_headers(host_header, headers, body)
        )
        keys: list[PoolKey] = [
            (target.scheme, str(addr), target.port, target.host) for addr in target.addresses
        ]
        conn = self._pool.take(keys)
        if conn is not None:
            try:
                await self._run(conn, head, body, progress, reused=True)
                return
            except StaleConnectionError:
                # The receiver closed the idle connection as we reused it and no byte of an
                # answer came back: one retry on a fresh connection, or a keep-alive race would
                # make a healthy endpoint look failing.
                pass
        conn = await self._connect(target, keys)
        await self._run(conn, head, body, progress, reused=False)

    def _request_headers(
        self, host_header: str, headers: Mapping[str, str], body: bytes
    ) -> list[tuple[str, str]]:
        merged = {
            "user-agent": self._user_agent,
            "content-type": "application/json",
            # Compressed bodies could expand far beyond the read cap; ask for none.
            "accept-encoding": "identity",
        }
        for name, value in headers.items():
            lowered = name.lower()
            if lowered not in _RESERVED:
                merged[lowered] = value
        return [("host", host_header), *merged.items(), ("content-length", str(len(body)))]

    async def _connect(self, target: ResolvedTarget, keys: list[PoolKey]) -> Connection:
        context = self._context() if target.scheme == "https" else None
        last_error: OSError | None = None
        for key in keys:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    return await open_connection(key, context)
            except TimeoutError:
                raise
            except OSError as exc:
                # Try the next checked address on a failed connect (e.g. no IPv6 route), but not
                # after a TLS failure, which another address of the same name would repeat.
                if _classify(exc) == "tls_error":
                    raise
                last_error = exc
        raise last_error or ConnectionError("no checked address to connect to")

    async def _run(
        self, conn: Connection, head: h11.Request, body: bytes, progress: Progress, *, reused: bool
    ) -> None:
        keep = False
        try:
            keep = await conn.request(head, body, progress, self._max_response_bytes, reused=reused)
        finally:
            # Any error, cancellation (the deadline), truncation or unfinished exchange drops it.
            if keep and not self._closed:
                self._pool.put(conn)
            else:
                conn.abort()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()


@functools.lru_cache(maxsize=1024)
def _url_parts(url: str) -> tuple[str, bytes]:
    """``Host`` value (the original netloc) and request target of a URL the guard accepted."""
    parsed = httpx.URL(url)
    return parsed.netloc.decode("ascii"), parsed.raw_path


def _capture_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    captured: dict[str, str] = {}
    for raw_name, raw_value in raw:
        key = raw_name.decode("latin-1").lower()
        if key not in captured and len(captured) >= _MAX_HEADERS:
            continue
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        value = value[:_MAX_HEADER_VALUE]
        captured[key] = f"{captured[key]}, {value}" if key in captured else value
    return captured
