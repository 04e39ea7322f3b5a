"""Edges of the secret scanning endpoint and its public keys: odd key documents, the given client
and headers, configuration, null fields, raw ASGI corner cases (bad Content-Length, a client that
leaves mid-body, lifespan and websocket scopes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys import KeyService
from extapi_kit.keys.leaks import LeakResponder
from extapi_kit.keys.leaks_github import PublicKeys, SecretScanningEndpoint
from tests.keys.support import cheap_hasher
from tests.keys.test_leaks import KEY_ID, Rig, matches, pem, rig, serve

pytestmark = pytest.mark.anyio


@dataclass
class KeysServer:
    """The provider's public keys URL, answering whatever document (and status) a test sets."""

    body: bytes = b""
    status: int = 200
    requests: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests.append({k.decode(): v.decode() for k, v in scope["headers"]})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _any_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _document(*entries: Any) -> bytes:
    return json.dumps({"public_keys": list(entries)}).encode()


def _sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


@dataclass
class Site:
    keys: KeyService
    public: PublicKeys
    url: str

    async def post(self, body: bytes, key_id: str, signature: str) -> httpx.Response:
        headers = {
            "content-type": "application/json",
            "github-public-key-identifier": key_id,
            "github-public-key-signature": signature,
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.url, content=body, headers=headers)


@contextlib.asynccontextmanager
async def site(server: KeysServer, **keys_options: Any) -> AsyncIterator[Site]:
    """Serve ``server`` as the keys URL and an endpoint using it, both under uvicorn."""
    keys = KeyService("memory://", hasher=cheap_hasher())
    responder = LeakResponder(keys)
    async with serve(server) as keys_base:
        public = PublicKeys(keys_base + "/keys", timeout=2.0, **keys_options)
        async with serve(SecretScanningEndpoint(responder, public)) as base:
            yield Site(keys, public, base + "/")
    await responder.aclose()
    await keys.aclose()


def test_configuration_is_checked_and_reprs_hold_no_secret() -> None:
    """A non-http(s) keys URL, non-positive timeout or max_age, a negative refetch interval, an
    unknown feedback form and non-positive rate, burst or concurrency are ConfigurationErrors;
    the reprs name the URL and the body cap only."""
    bad_keys: list[tuple[str, dict[str, Any]]] = [
        ("ftp://keys.example/doc", {}),
        ("file:///etc/keys.json", {}),
        ("https://keys.example/doc", {"timeout": 0}),
        ("https://keys.example/doc", {"max_age": 0}),
        ("https://keys.example/doc", {"refetch_interval": -1}),
    ]
    for url, options in bad_keys:
        with pytest.raises(ConfigurationError):
            PublicKeys(url, **options)
    public = PublicKeys("https://keys.example/doc", headers={"Authorization": "Bearer sekrit"})
    assert repr(public) == "PublicKeys('https://keys.example/doc', 0 cached)"
    responder = LeakResponder(KeyService("memory://", hasher=cheap_hasher()))
    bad_endpoints: list[dict[str, Any]] = [
        {"feedback": "plain"},
        {"rate": 0},
        {"rate": -1.0},
        {"burst": 0},
        {"max_in_progress": 0},
    ]
    for endpoint_options in bad_endpoints:
        with pytest.raises(ConfigurationError):
            SecretScanningEndpoint(responder, public, **endpoint_options)
    endpoint = SecretScanningEndpoint(responder, public, max_body="2KiB", feedback="hash")
    assert repr(endpoint) == "SecretScanningEndpoint(max_body=2048, feedback='hash')"
    assert "sekrit" not in repr(public) + repr(endpoint)


async def test_only_well_formed_p256_keys_are_taken_from_the_document() -> None:
    """K14: entries that are not objects, lack a usable key id or PEM, hold a broken PEM, or an
    RSA, Ed25519 or P-384 key are skipped; the P-256 key beside them verifies reports, and a
    report signed by the skipped P-384 key is a 401 problem."""
    good = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed = ed25519.Ed25519PrivateKey.generate()
    server = KeysServer(
        body=_document(
            "not an object",
            5,
            {"key": pem(good)},
            {"key_identifier": 7, "key": pem(good)},
            {"key_identifier": "a/b", "key": pem(good)},
            {"key_identifier": "x" * 129, "key": pem(good)},
            {"key_identifier": "no-pem", "key": None},
            {"key_identifier": "broken", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n"},
            {"key_identifier": "non-ascii", "key": "clé"},
            {"key_identifier": "rsa", "key": _any_pem(rsa_key)},
            {"key_identifier": "ed25519", "key": _any_pem(ed)},
            {"key_identifier": "p384", "key": pem(p384)},
            {"key_identifier": "good", "key": pem(good), "is_current": True},
        )
    )
    async with site(server) as s:
        _, secret = await s.keys.create("ci")
        body = matches(secret)
        r = await s.post(body, "p384", _sign(p384, body))
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert s.public.cached == frozenset({"good"})
        r = await s.post(body, "good", _sign(good, body))
        assert r.status_code == 200, r.text
        assert r.json()[0]["label"] == "true_positive"
        assert len(server.requests) == 1


async def test_unusable_keys_documents_never_load_and_answer_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """K14: a keys URL answering an error status, non-JSON, JSON without a ``public_keys`` list,
    or a document past 256 KiB loads no key: reports answer 503 with Retry-After (the scanner
    retries) and the failed fetch is logged; once a good document is served, reports verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    good = _document({"key_identifier": KEY_ID, "key": pem(key)})
    huge = json.dumps({"public_keys": [], "padding": "x" * (300 * 1024)}).encode()
    bad: list[tuple[int, bytes]] = [
        (404, good),
        (200, b"<html>not json</html>"),
        (200, b"[1, 2]"),
        (200, b'{"public_keys": {"a": 1}}'),
        (200, huge),
    ]
    server = KeysServer()
    async with site(server, refetch_interval=0) as s:
        _, secret = await s.keys.create("ci")
        body = matches(secret)
        with caplog.at_level(logging.WARNING, "extapi_kit.keys.leaks"):
            for status, document in bad:
                server.status, server.body = status, document
                r = await s.post(body, KEY_ID, _sign(key, body))
                assert r.status_code == 503, (status, document[:40], r.text)
                assert r.headers["retry-after"] == "60"
                assert not s.public.available
        assert caplog.text.count("could not fetch secret scanning public keys") == len(bad)
        assert len(server.requests) == len(bad)
        server.status, server.body = 200, good
        r = await s.post(body, KEY_ID, _sign(key, body))
        assert r.status_code == 200 and r.json()[0]["label"] == "true_positive"


async def test_a_given_client_is_used_with_the_extra_headers() -> None:
    """The keys document is fetched with the client given (left open for its owner) and carries
    the extra headers (a GitHub token against its API's rate limit) and ``Accept: JSON``."""
    key = ec.generate_private_key(ec.SECP256R1())
    server = KeysServer(body=_document({"key_identifier": "k1", "key": pem(key)}))
    async with serve(server) as base, httpx.AsyncClient(headers={"x-client": "ours"}) as client:
        public = PublicKeys(
            base + "/keys", headers={"Authorization": "Bearer gh-token"}, client=client
        )
        assert await public.get("k1") is not None
        assert await public.get("unknown") is None  # within refetch_interval: no second fetch
        assert not client.is_closed
    assert len(server.requests) == 1
    seen = server.requests[0]
    assert seen["authorization"] == "Bearer gh-token"
    assert seen["accept"] == "application/json"
    assert seen["x-client"] == "ours"
    assert repr(public) == f"PublicKeys('{base}/keys', 1 cached)"


async def test_null_type_url_and_source_read_as_empty() -> None:
    """A report whose ``type``, ``url`` and ``source`` are null is valid (read as empty strings):
    our key is a true positive, revoked, answered with an empty token_type."""
    async with rig() as r:
        record, secret = await r.keys.create("ci")
        body = json.dumps([{"token": secret, "type": None, "url": None, "source": None}]).encode()
        resp = await r.post(body)
        assert resp.status_code == 200, resp.text
        assert resp.json() == [{"token_raw": secret, "token_type": "", "label": "true_positive"}]
        assert (await r.keys.get(record.id)).status(r.clock()) == "revoked"
        reports, _ = await r.responder.store.list()
        assert [(x.key_id, x.url) for x in reports] == [(record.id, "")]


async def _call(
    app: SecretScanningEndpoint, scope: dict[str, Any], inbox: list[Message]
) -> tuple[list[Message], int]:
    """Call ``app`` as an ASGI app; return what it sent and how many messages it received."""
    sent: list[Message] = []
    pending = list(inbox)
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, received


def _signed(r: Rig, body: bytes) -> list[tuple[bytes, bytes]]:
    """The provider's key id and signature headers for ``body``."""
    return [
        (b"github-public-key-identifier", KEY_ID.encode()),
        (b"github-public-key-signature", r.provider.sign(body).encode()),
    ]


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers,
        "client": ("192.0.2.10", 4000),
        "server": ("127.0.0.1", 80),
    }


async def test_non_numeric_content_length_is_refused_before_reading() -> None:
    """A Content-Length that is not a number (a lenient proxy passed it on) is a 400
    invalid-content-length problem, sent before any body is read or signature checked."""
    async with rig() as r:
        body = matches("x")
        headers = [(b"content-length", b"12a"), *_signed(r, body)]
        sent, received = await _call(r.endpoint, _scope(headers), [{"type": "http.request"}])
        assert received == 0
        assert sent[0]["status"] == 400
        assert (b"content-type", b"application/problem+json") in sent[0]["headers"]
        assert "invalid-content-length" in json.loads(sent[1]["body"])["type"]
        assert r.provider.hits == 0


async def test_a_client_leaving_mid_body_changes_nothing() -> None:
    """K12: a report whose sender disconnects halfway is checked as the bytes that arrived, so
    its signature (over the whole body) fails: 401, and the reported key stays active."""
    async with rig() as r:
        record, secret = await r.keys.create("ci")
        body = matches(secret)
        headers = [(b"content-type", b"application/json"), *_signed(r, body)]
        half = len(body) // 2
        inbox: list[Message] = [
            {"type": "http.request", "body": body[:half], "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent, _ = await _call(r.endpoint, _scope(headers), inbox)
        assert sent[0]["status"] == 401
        assert secret.encode() not in sent[1]["body"]
        assert (await r.keys.get(record.id)).status(r.clock()) == "active"
        assert r.leaks == []


async def test_lifespan_is_answered_and_websockets_get_nothing() -> None:
    """Mounted as a whole app, the endpoint completes lifespan startup and shutdown (so a server
    with lifespan on starts and stops), ignoring messages it does not know, and sends nothing
    on a websocket scope."""
    async with rig() as r:
        sent, received = await _call(
            r.endpoint,
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            [
                {"type": "lifespan.startup"},
                {"type": "lifespan.ping"},  # not in the spec: ignored
                {"type": "lifespan.shutdown"},
            ],
        )
        assert sent == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]
        assert received == 3
        ws = {**_scope([]), "type": "websocket"}
        assert await _call(r.endpoint, ws, [{"type": "websocket.connect"}]) == ([], 0)


async def test_reports_refused_for_too_many_in_progress_spend_no_rate_budget() -> None:
    """K18: a report refused because ``max_in_progress`` are already being processed answers 429
    without spending the rate budget, so the provider's next report after the busy one finishes
    is served rather than refused for a budget that the refusals used up."""
    async with rig(rate=0.001, burst=2, max_in_progress=1) as r:
        _, secret = await r.keys.create("ci")
        body = matches(secret)
        headers = [(b"content-type", b"application/json"), *_signed(r, body)]
        arrived = asyncio.Event()
        release = asyncio.Event()
        busy_sent: list[Message] = []

        async def slow_receive() -> Message:
            arrived.set()
            await release.wait()
            return {"type": "http.request", "body": body, "more_body": False}

        async def busy_send(message: Message) -> None:
            busy_sent.append(message)

        busy = asyncio.create_task(r.endpoint(_scope(headers), slow_receive, busy_send))
        await arrived.wait()  # one report in progress: the bucket has spent 1 of its 2
        for _ in range(3):
            sent, _ = await _call(r.endpoint, _scope(headers), [])
            assert sent[0]["status"] == 429
        release.set()
        await busy
        assert busy_sent[0]["status"] == 200
        sent, _ = await _call(r.endpoint, _scope(headers), [{"type": "http.request", "body": body}])
        assert sent[0]["status"] == 200, sent[1]["body"]
