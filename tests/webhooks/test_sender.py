"""WebhookSender against real receivers under uvicorn on 127.0.0.1 (W1-W7)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.webhooks.sender import AttemptResult, WebhookSender, parse_retry_after
from extapi_kit.webhooks.signing import generate_secret, signature_headers, verify
from extapi_kit.webhooks.ssrf import URLGuard
from tests.webhooks import receivers
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio
BODY = b'{"type":"ping","data":{}}'
LOOPBACK = URLGuard(allow_loopback=True)


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


@asynccontextmanager
async def _listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener on 127.0.0.1 that counts accepted connections."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        server.close()
        await server.wait_closed()


def _resolver_to(*answers: list[str]) -> tuple[URLGuard, list[str]]:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return URLGuard(allow_loopback=True, resolver=resolve), calls


async def test_ok_delivery_headers_and_body() -> None:
    """A signed POST arrives byte-exact with signature headers, Host and User-Agent; 2xx is ok."""
    secret = generate_secret()
    recorder = Recorder()
    async with serve(recorder) as base, WebhookSender(guard=LOOPBACK) as sender:
        headers = signature_headers([secret], "msg_1", 1_700_000_000, BODY)
        result = await sender.send(f"{base}/hooks/in?x=1", headers, BODY)
    assert result.ok and result.status == 200 and result.error is None
    assert result.response_excerpt == "ok" and result.duration > 0
    (req,) = recorder.requests
    assert req.method == "POST" and req.path == "/hooks/in" and req.body == BODY
    assert req.headers["host"] == f"127.0.0.1:{_port(base)}"
    assert req.headers["user-agent"] == "extapi-kit-webhooks/0.1"
    assert req.headers["content-type"] == "application/json"
    verify(req.body, req.headers, secret, now=1_700_000_000)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0",
        "localhost",
        "[::1]",
        "0.0.0.0",
    ],
)
async def test_ssrf_blocked_before_any_connection(host: str) -> None:
    """Loopback in any spelling is blocked at send; no TCP connection reaches the port (W1, W2)."""
    async with _listener() as (port, accepted), WebhookSender() as sender:
        result = await sender.send(f"http://{host}:{port}/", {}, BODY)
    assert result.error == "ssrf_blocked" and result.status is None and not result.ok
    assert accepted == []


async def test_mapped_loopback_blocked_even_with_allow_loopback() -> None:
    """allow_loopback admits 127.0.0.1 but not its IPv4-mapped IPv6 spelling (W1)."""
    async with _listener() as (port, accepted), WebhookSender(guard=LOOPBACK) as sender:
        blocked = await sender.send(f"http://[::ffff:127.0.0.1]:{port}/", {}, BODY)
    assert blocked.error == "ssrf_blocked" and accepted == []


async def test_dns_rebinding_connection_pinned_to_checked_ip() -> None:
    """The connection goes to the address the guard checked, with no second lookup (W3).

    The name does not exist in real DNS, so the request can only arrive if the sender connected
    to the checked IP; a later answer pointing at a private address is refused outright.
    """
    guard, calls = _resolver_to(["127.0.0.1"], ["10.0.0.1"])
    recorder = Recorder()
    async with serve(recorder) as base, WebhookSender(guard=guard) as sender:
        url = f"http://hooks.rebind.invalid:{_port(base)}/in"
        first = await sender.send(url, {}, BODY)
        assert first.ok, first
        assert calls == ["hooks.rebind.invalid"]
        second = await sender.send(url, {}, BODY)
    assert second.error == "ssrf_blocked"
    assert calls == ["hooks.rebind.invalid"] * 2
    (req,) = recorder.requests
    assert req.headers["host"] == f"hooks.rebind.invalid:{_port(base)}"


async def test_next_checked_address_tried_after_failed_connect() -> None:
    """When the first checked address refuses, the next checked one is used (still pinned)."""
    guard, calls = _resolver_to(["127.0.0.2", "127.0.0.1"])
    recorder = Recorder()
    async with serve(recorder) as base, WebhookSender(guard=guard) as sender:
        result = await sender.send(f"http://multi.invalid:{_port(base)}/", {}, BODY)
    assert result.ok and len(recorder.requests) == 1 and calls == ["multi.invalid"]


async def test_caller_cannot_override_host_or_framing() -> None:
    """Host, Content-Length and Transfer-Encoding from the caller are ignored; others pass."""
    recorder = Recorder()
    async with serve(recorder) as base, WebhookSender(guard=LOOPBACK) as sender:
        headers = {
            "Host": "internal.example",
            "Content-Length": "1",
            "Transfer-Encoding": "chunked",
            "X-Custom": "yes",
        }
        result = await sender.send(base, headers, BODY)
    assert result.ok
    (req,) = recorder.requests
    assert req.headers["host"] == f"127.0.0.1:{_port(base)}" and req.body == BODY
    assert req.headers["x-custom"] == "yes" and "transfer-encoding" not in req.headers


async def test_redirect_is_a_failure_and_not_followed() -> None:
    """A 302 (to metadata or anywhere) is recorded as error "redirect" and never followed (W4)."""
    recorder = Recorder()
    async with serve(recorder) as target, WebhookSender(guard=LOOPBACK) as sender:
        async with serve(receivers.redirect()) as base:
            meta = await sender.send(base, {}, BODY)
        async with serve(receivers.redirect(f"{target}/stolen", status=307)) as base:
            local = await sender.send(base, {}, BODY)
    assert meta.status == 302 and meta.error == "redirect" and not meta.ok
    assert meta.response_headers["location"].startswith("http://169.254.169.254/")
    assert local.status == 307 and local.error == "redirect"
    assert recorder.requests == []


async def test_environment_proxies_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY/HTTPS_PROXY/ALL_PROXY in the environment are not used (W5)."""
    recorder = Recorder()
    async with _listener() as (proxy_port, proxied):
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with serve(recorder) as base, WebhookSender(guard=LOOPBACK) as sender:
            result = await sender.send(base, {}, BODY)
    assert result.ok and len(recorder.requests) == 1
    assert proxied == []


async def test_total_deadline_bounds_a_dripping_body() -> None:
    """A body dripping well inside httpx's per-read timeout ends at the total deadline (W6)."""
    dripper = receivers.drip(interval=0.1, total=10_000)
    async with serve(dripper) as base, WebhookSender(guard=LOOPBACK, timeout=1.0) as sender:
        result = await sender.send(base, {}, BODY)
    assert result.error == "timeout" and result.status == 200 and not result.ok
    assert 0 < dripper.sent < dripper.total


async def test_hang_after_headers_times_out() -> None:
    """Headers then silence: the attempt fails with "timeout" and keeps what arrived (W6)."""
    app = receivers.hang_after_headers
    async with serve(app) as base, WebhookSender(guard=LOOPBACK, timeout=1.0) as sender:
        result = await sender.send(base, {}, BODY)
    assert result.error == "timeout" and result.status == 200
    assert result.response_excerpt in ("", "{")


async def test_never_answering_socket_times_out() -> None:
    """A socket that accepts the connection in the backlog but never answers times out (W6)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        async with WebhookSender(guard=LOOPBACK, timeout=1.0) as sender:
            result = await sender.send(f"http://127.0.0.1:{sock.getsockname()[1]}/", {}, BODY)
    finally:
        sock.close()
    assert result.error == "timeout" and result.status is None


async def test_huge_response_read_is_capped() -> None:
    """A 64 MiB answer is read only up to the cap and the rest is never transferred (W7)."""
    big = receivers.huge()
    async with serve(big) as base, WebhookSender(guard=LOOPBACK) as sender:
        result = await sender.send(base, {}, BODY)
        async with asyncio.timeout(10):
            await big.finished.wait()
    assert result.ok and result.status == 200
    assert result.response_excerpt.startswith("y" * 100)
    assert result.response_excerpt.endswith("[truncated]")
    assert result.response_excerpt.count("y") == 20_000
    assert big.sent < big.size // 4


async def test_error_statuses_and_retry_after() -> None:
    """4xx/5xx fail without an error class; 429 carries Retry-After; 410 is reported (W9)."""
    async with WebhookSender(guard=LOOPBACK) as sender:
        async with serve(receivers.failing(500)) as base:
            failed = await sender.send(base, {}, BODY)
        async with serve(receivers.gone) as base:
            gone = await sender.send(base, {}, BODY)
        async with serve(receivers.rate_limited("120")) as base:
            limited = await sender.send(base, {}, BODY)
        async with serve(receivers.slow(0.05, status=202)) as base:
            accepted = await sender.send(base, {}, BODY)
    assert (failed.status, failed.error, failed.ok) == (500, None, False)
    assert failed.response_excerpt == "failure"
    assert (gone.status, gone.ok) == (410, False)
    assert (limited.status, limited.retry_after) == (429, 120.0)
    assert accepted.ok and accepted.status == 202


async def test_connection_refused_and_dns_error() -> None:
    """A closed port is "connection_refused"; a name that does not resolve is "dns_error"."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def no_such_name(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async with WebhookSender(guard=LOOPBACK) as sender:
        refused = await sender.send(f"http://127.0.0.1:{port}/", {}, BODY)
    async with WebhookSender(guard=URLGuard(resolver=no_such_name)) as sender:
        dns = await sender.send("https://nothing.invalid/", {}, BODY)
    assert refused.error == "connection_refused" and refused.status is None
    assert dns.error == "dns_error" and dns.status is None


async def test_tls_to_plain_http_is_tls_error() -> None:
    """An https:// URL pointing at a plain-HTTP port fails with "tls_error"."""
    async with serve(receivers.ok) as base, WebhookSender(guard=LOOPBACK) as sender:
        result = await sender.send(base.replace("http://", "https://"), {}, BODY)
    assert result.error == "tls_error" and result.status is None


async def test_cookies_never_carried_between_endpoints() -> None:
    """A Set-Cookie from one receiver is never sent to another on the same address."""

    async def cookie_setter(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(b"set-cookie", b"session=stolen; Path=/"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    recorder = Recorder()
    async with WebhookSender(guard=LOOPBACK) as sender:
        async with serve(cookie_setter) as first, serve(recorder) as second:
            assert (await sender.send(first, {}, BODY)).ok
            assert (await sender.send(second, {}, BODY)).ok
    assert "cookie" not in recorder.requests[0].headers


def test_parse_retry_after() -> None:
    """Retry-After is parsed as delta seconds or an HTTP date; junk is ignored (W9)."""
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, tz=UTC), usegmt=True)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(date, now=now) == 90.0
    past = format_datetime(datetime.fromtimestamp(now - 90, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    for junk in (None, "", "-5", "soon", "1.5", "Mon, 99 Foo 2024"):
        assert parse_retry_after(junk, now=now) is None


def test_attempt_result_ok() -> None:
    """ok means a 2xx status and no error class."""
    assert AttemptResult(status=204, duration=0.1).ok
    assert not AttemptResult(status=200, duration=0.1, error="timeout").ok
    assert not AttemptResult(status=None, duration=0.1, error="dns_error").ok
    assert not AttemptResult(status=302, duration=0.1, error="redirect").ok


# HTTPS with a certificate for a.example only, trusted through the sender's SSL context.
@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=a.example", "-addext", "subjectAltName=DNS:a.example",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield str(cert), str(key)


def _trusting(sender: WebhookSender, cert: str) -> None:
    context = ssl.create_default_context(cafile=cert)
    sender._ssl = context  # test-only: trust the throwaway certificate for new TLS pools


async def test_https_pinned_keeps_sni_and_host(cert_files: tuple[str, str]) -> None:
    """Over HTTPS the pinned connection verifies the certificate for the name, not the IP (W3)."""
    cert, key = cert_files
    guard, calls = _resolver_to(["127.0.0.1"])
    recorder = Recorder()
    async with serve(recorder, ssl_certfile=cert, ssl_keyfile=key) as base:
        port = _port(base)
        sender = WebhookSender(guard=guard)
        _trusting(sender, cert)
        try:
            good = await sender.send(f"https://a.example:{port}/in", {}, BODY)
            other = await sender.send(f"https://b.example:{port}/in", {}, BODY)
            again = await sender.send(f"https://a.example:{port}/in", {}, BODY)
        finally:
            await sender.aclose()
    assert good.ok, good
    assert recorder.requests[0].headers["host"] == f"a.example:{port}"
    # b.example shares the IP and port but must not reuse a.example's TLS connection.
    assert other.error == "tls_error"
    assert again.ok and len(recorder.requests) == 2
    assert calls == ["a.example", "b.example", "a.example"]
