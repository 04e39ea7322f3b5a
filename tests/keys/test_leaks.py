"""Leaked-key reports over real HTTP: a local ECDSA P-256 key pair plays the scanning provider.

The provider's public keys document is served by uvicorn on 127.0.0.1, the endpoint runs under
uvicorn too, and every request is signed like GitHub's secret scanning partner program signs it.
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
from cryptography.hazmat.primitives.asymmetric import ec

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.audit import MemorySink
from extapi_kit.keys import KeyService
from extapi_kit.keys.leaks import LeakReport, LeakResponder, leak_event_data
from extapi_kit.keys.leaks_github import PublicKeys, SecretScanningEndpoint
from extapi_kit.keys.models import KeyRecord, iso
from tests.keys.support import cheap_hasher
from tests.support.serving import serving

pytestmark = pytest.mark.anyio

KEY_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1; yield its base URL."""
    async with serving(app, lifespan="off") as base:
        yield base


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    """Return the PEM of a private key's public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class Provider:
    """The scanning provider: signing keys and the public keys document it serves."""

    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    current: dict[str, bool] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    hits: int = 0
    down: bool = False
    hang: bool = False

    def add(self, key_id: str, *, current: bool = True) -> None:
        self.keys[key_id] = ec.generate_private_key(ec.SECP256R1())
        self.current[key_id] = current

    def sign(self, body: bytes, key_id: str = KEY_ID) -> str:
        raw = self.keys[key_id].sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(raw).decode()

    def document(self) -> bytes:
        entries = [
            {"key_identifier": kid, "key": pem(k), "is_current": self.current[kid]}
            for kid, k in self.keys.items()
            if kid not in self.removed
        ]
        return json.dumps({"public_keys": entries}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.hits += 1
        if self.hang:
            await asyncio.sleep(3)  # past the 0.3 s fetch deadline
        status, body = (503, b"down") if self.down else (200, self.document())
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """Everything one test needs: key service, responder, endpoint URL and the provider."""

    keys: KeyService
    responder: LeakResponder
    endpoint: SecretScanningEndpoint
    provider: Provider
    url: str
    audit: MemorySink
    leaks: list[dict[str, Any]]
    key_events: list[tuple[str, str]]
    clock: Clock

    async def post(
        self,
        body: bytes,
        *,
        key_id: str = KEY_ID,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sig = self.provider.sign(body, key_id) if signature is None else signature
        sent = {
            "content-type": "application/json",
            "github-public-key-identifier": key_id,
            "github-public-key-signature": sig,
            **(headers or {}),
        }
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.url, content=body, headers=sent)


def matches(*tokens: str, url: str = "https://github.com/o/r/blob/1/a.txt") -> bytes:
    """Return a report body for tokens."""
    items = [
        {"token": t, "type": "extapi_api_key", "url": url, "source": "content"} for t in tokens
    ]
    return json.dumps(items).encode()


@contextlib.asynccontextmanager
async def rig(
    store: str = "memory://", *, action: str = "revoke", **endpoint_options: Any
) -> AsyncIterator[Rig]:
    """Start the provider's key server and the endpoint under uvicorn."""
    clock = Clock()
    provider = Provider()
    provider.add(KEY_ID)
    key_events: list[tuple[str, str]] = []
    leaks: list[dict[str, Any]] = []

    def on_event(kind: str, record: KeyRecord) -> None:
        key_events.append((kind, record.id))

    def on_leak(report: LeakReport, record: KeyRecord) -> None:
        leaks.append(leak_event_data(report, record))

    keys = KeyService("memory://", hasher=cheap_hasher(), on_event=on_event, clock=clock)
    audit = MemorySink()
    responder = LeakResponder(
        keys, store, action=action, grace="1h", audit=audit, on_leak=on_leak, clock=clock
    )
    options: dict[str, Any] = {"refetch_interval": 60, "timeout": 1.0}
    options.update(endpoint_options.pop("keys_options", {}))
    async with serve(provider) as keys_base:
        public = PublicKeys(keys_base + "/keys", clock=clock, **options)
        endpoint = SecretScanningEndpoint(responder, public, clock=clock, **endpoint_options)
        async with serve(endpoint) as base:
            yield Rig(
                keys, responder, endpoint, provider, base + "/", audit, leaks, key_events, clock
            )
    await responder.aclose()
    await keys.aclose()


async def test_valid_report_revokes_our_key_and_answers_labels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """K11: a correctly signed report of one of our keys revokes it, answers true_positive,
    stores a report with only the key id and the URL, writes one audit record and notifies the
    owner once; no secret lands in a log, audit row, report or webhook payload."""
    caplog.set_level(logging.DEBUG)
    async with rig() as r:
        record, secret = await r.keys.create("ci", owner="acme")
        body = matches(secret)
        resp = await r.post(body)
        assert resp.status_code == 200
        assert resp.json() == [
            {"token_raw": secret, "token_type": "extapi_api_key", "label": "true_positive"}
        ]
        stored = await r.keys.get(record.id)
        assert stored.status(r.clock()) == "revoked"
        assert stored.leaked_at == r.clock()
        reports, _ = await r.responder.store.list()
        assert [(x.key_id, x.url, x.action) for x in reports] == [
            (record.id, "https://github.com/o/r/blob/1/a.txt", "revoked")
        ]
        assert [x["action"] for x in r.leaks] == ["revoked"]
        assert r.leaks[0]["owner"] == "acme"
        audit, _ = await r.audit.query()
        rows = [a for a in audit if a.extra.get("event") == "api_key.leaked"]
        assert [(a.key_id, a.extra["url"]) for a in rows] == [(record.id, reports[0].url)]
        secret_part = secret.split("_")[3]
        everything = (
            caplog.text
            + json.dumps([a.to_dict() for a in audit])
            + json.dumps(r.leaks)
            + json.dumps([x.to_dict() for x in reports])
            + repr(reports)
        )
        assert secret_part not in everything
        assert record.id in caplog.text


async def test_hash_feedback_sends_no_token_back() -> None:
    """K11: with feedback="hash" the answer carries the token's SHA-256, never the token."""
    import hashlib

    async with rig(feedback="hash") as r:
        _, secret = await r.keys.create("ci")
        resp = await r.post(matches(secret))
        assert resp.json() == [
            {
                "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
                "token_type": "extapi_api_key",
                "label": "true_positive",
            }
        ]
        assert secret not in resp.text


async def test_invalid_signatures_are_refused_and_nothing_happens() -> None:
    """K12: a tampered body, a signature by another key, a non-base64 or empty signature and
    missing headers answer 401 problem+json; the key is untouched."""
    async with rig() as r:
        record, secret = await r.keys.create("ci")
        body = matches(secret)
        good = r.provider.sign(body)
        other = ec.generate_private_key(ec.SECP256R1())
        forged = base64.b64encode(other.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
        attempts = [
            await r.post(body + b" ", signature=good),
            await r.post(body, signature=forged),
            await r.post(body, signature="not base64!!"),
            await r.post(body, signature=base64.b64encode(b"x" * 70).decode()),
            await r.post(body, signature="A" * 600),
        ]
        async with httpx.AsyncClient() as client:
            attempts.append(await client.post(r.url, content=body))
        for resp in attempts:
            assert resp.status_code == 401, resp.text
            assert resp.headers["content-type"] == "application/problem+json"
            assert secret not in resp.text
        assert (await r.keys.get(record.id)).status(r.clock()) == "active"
        assert r.leaks == [] and r.key_events == [("api_key.created", record.id)]


async def test_unknown_key_id_refetches_at_most_once_per_interval() -> None:
    """K13: an unknown key id is refused (401) and refetches the keys document at most once per
    refetch_interval, however many made-up ids arrive; a key the provider adds later is found
    on the next refetch."""
    async with rig() as r:
        _, secret = await r.keys.create("ci")
        body = matches(secret)
        assert (await r.post(body)).status_code == 200
        assert r.provider.hits == 1
        r.clock.now += 61
        for i in range(20):
            resp = await r.post(body, key_id=f"made-up-{i}", signature=r.provider.sign(body))
            assert resp.status_code == 401
        assert r.provider.hits == 2  # one refetch for twenty unknown ids
        r.provider.add("new-key")
        resp = await r.post(body, key_id="new-key")
        assert resp.status_code == 401  # still within the interval: not fetched again
        r.clock.now += 61
        resp = await r.post(body, key_id="new-key")
        assert resp.status_code == 200
        assert r.provider.hits == 3


async def test_removed_and_non_current_keys() -> None:
    """K14: a key removed from the provider's document stops verifying once the document is
    refetched (max_age); with accept_non_current=False a key listed as not current is
    refused."""
    async with rig(keys_options={"max_age": 300, "accept_non_current": False}) as r:
        _, secret = await r.keys.create("ci")
        r.provider.add("old", current=False)
        body = matches(secret)
        assert (await r.post(body, key_id="old")).status_code == 401
        assert (await r.post(body)).status_code == 200
        r.provider.removed.add(KEY_ID)
        assert (await r.post(body)).status_code == 200  # cached document still fresh
        r.clock.now += 301
        resp = await r.post(body)
        assert resp.status_code == 401
        assert KEY_ID not in r.endpoint.public_keys.cached


async def test_fetch_failures_keep_cached_keys_and_never_hang() -> None:
    """K14: when the keys document cannot be fetched (error or a server that hangs) the cached
    keys keep working, each fetch gives up at its deadline, and before any document was ever
    fetched the endpoint answers 503 with Retry-After (the scanner retries)."""
    async with rig(keys_options={"max_age": 10, "timeout": 0.3}) as r:
        _, secret = await r.keys.create("ci")
        body = matches(secret)
        r.provider.hang = True
        resp = await r.post(body)
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "60"
        r.provider.hang = False
        r.clock.now += 61
        assert (await r.post(body)).status_code == 200
        r.provider.down = True
        r.clock.now += 61
        assert (await r.post(body)).status_code == 200  # stale, refetch failed: cache kept
        r.provider.hang = True
        r.clock.now += 61
        assert (await r.post(body)).status_code == 200


async def test_replayed_body_is_idempotent() -> None:
    """K15: the same signed body sent again (and concurrently) answers the same labels and
    revokes, notifies and audits once; the same key found at another URL is one more report."""
    async with rig() as r:
        record, secret = await r.keys.create("ci", owner="acme")
        body = matches(secret)
        first = await r.post(body)
        again = await asyncio.gather(*(r.post(body) for _ in range(3)))
        assert all(a.json() == first.json() for a in again)
        assert [e for e in r.key_events if e[0] == "api_key.revoked"] == [
            ("api_key.revoked", record.id)
        ]
        assert len(r.leaks) == 1
        audit = [a for a in (await r.audit.query())[0] if a.extra.get("event")]
        assert len(audit) == 1
        other = await r.post(matches(secret, url="https://gist.github.com/x"))
        assert other.json()[0]["label"] == "true_positive"
        assert [x["url"] for x in r.leaks] == [
            "https://github.com/o/r/blob/1/a.txt",
            "https://gist.github.com/x",
        ]
        assert [x["action"] for x in r.leaks] == ["revoked", "none"]


async def test_tokens_of_ours_and_foreign_tokens() -> None:
    """K16: in one report, a live key is a true positive (revoked), an already revoked key a
    true positive with no action, a wrong checksum, a wrong secret with a real key id and a
    foreign token are false positives and leave every key as it was."""
    async with rig() as r:
        live, live_secret = await r.keys.create("live")
        old, old_secret = await r.keys.create("old")
        await r.keys.revoke(old.id)
        target, target_secret = await r.keys.create("target")
        _, other_secret = await r.keys.create("other")
        # The other key's secret and checksum under the target's id: a well-formed key whose
        # checksum fails; then one with a valid checksum but the wrong secret for that id.
        from extapi_kit.keys.format import _checksum

        parts = other_secret.split("_")
        swapped_body = "_".join([parts[0], parts[1], target.id, parts[3][:-6]])
        bad_checksum = swapped_body + parts[3][-6:]
        wrong_secret = swapped_body + _checksum(swapped_body)
        foreign = "ghp_" + "a" * 36
        resp = await r.post(
            matches(live_secret, old_secret, bad_checksum, wrong_secret, foreign, live_secret)
        )
        assert resp.status_code == 200
        assert [x["label"] for x in resp.json()] == [
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
            "false_positive",
            "true_positive",
        ]
        assert [x["token_raw"] for x in resp.json()][4] == foreign
        assert (await r.keys.get(live.id)).status(r.clock()) == "revoked"
        assert (await r.keys.get(target.id)).status(r.clock()) == "active"
        assert (await r.keys.get(target.id)).leaked_at is None
        assert sorted(x["action"] for x in r.leaks) == ["none", "revoked"]
        assert target_secret not in json.dumps(r.leaks)


async def test_flag_mode_keeps_the_key_working_until_the_grace_ends() -> None:
    """K16: with action="flag" the key keeps verifying, its expiry is capped at now + grace, the
    webhook says when it stops; after the grace it is refused; a second report does not extend
    the grace."""
    async with rig(action="flag") as r:
        record, secret = await r.keys.create("ci", owner="acme")
        start = r.clock()
        assert (await r.post(matches(secret))).json()[0]["label"] == "true_positive"
        assert (await r.keys.verify(secret)).key_id == record.id
        flagged = await r.keys.get(record.id)
        assert flagged.expires_at == start + 3600 and flagged.leaked_at == start
        assert r.leaks[0]["action"] == "flagged"
        assert r.leaks[0]["grace_ends_at"] == iso(start + 3600)
        r.clock.now += 1800
        await r.post(matches(secret, url="https://example.com/other"))
        assert (await r.keys.get(record.id)).expires_at == start + 3600
        r.clock.now += 1801
        assert (await r.keys.get(record.id)).status(r.clock()) == "expired"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"\xff\xfe", 400),
        (b"[" * 100_000, 400),
        (b'{"token": "x"}', 422),
        (b"[1, 2]", 422),
        (b'[{"token": 5}]', 422),
        (b'[{"token": ""}]', 422),
        (b'[{"token": "x", "url": ["a"]}]', 422),
        (b'[{"token": "x", "type": {}}]', 422),
    ],
)
async def test_malformed_payloads_are_problems_never_500(body: bytes, status: int) -> None:
    """K17: a signed body that is not JSON, not a list or has wrong types answers problem+json
    400/422 (never 500); an empty list answers an empty list."""
    async with rig() as r:
        resp = await r.post(body)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert (await r.post(b"[]")).json() == []


async def test_huge_bodies_and_too_many_tokens_answer_413() -> None:
    """K17: a body over max_body is refused by Content-Length and, streamed without one, while
    reading; more tokens than max_tokens answer 413; no token appears in the error bodies."""
    async with rig(max_body="4KiB") as r:
        _, secret = await r.keys.create("ci")
        big = matches(*([secret] * 200))
        assert (await r.post(big)).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        sent = {
            "github-public-key-identifier": KEY_ID,
            "github-public-key-signature": r.provider.sign(big),
        }
        async with httpx.AsyncClient() as client:
            resp = await client.post(r.url, content=chunks(), headers=sent)
        assert resp.status_code == 413
        assert secret not in resp.text
        r.responder.max_tokens = 3
        resp = await r.post(matches(*(["x"] * 4)))
        assert resp.status_code == 413 and "At most 3" in resp.text
        async with httpx.AsyncClient() as client:
            assert (await client.get(r.url)).status_code == 405


async def test_flood_is_rate_limited_and_stores_nothing() -> None:
    """K18: a flood past the bucket's burst answers 429 with Retry-After before any signature or
    store work; reports of foreign tokens store nothing, so the report store stays empty."""
    async with rig(rate=1, burst=5, max_in_progress=30) as r:
        body = matches(*(f"garbage-{i}" for i in range(50)))
        results = await asyncio.gather(*(r.post(body) for _ in range(30)))
        codes = [x.status_code for x in results]
        assert codes.count(200) == 5
        assert codes.count(429) == 25
        limited = next(x for x in results if x.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert (await r.responder.store.list())[0] == []
        assert r.provider.hits == 1


async def test_responder_store_errors_answer_503() -> None:
    """K18: a failing key store answers 503 with Retry-After (the scanner retries), not 500."""
    async with rig() as r:
        _, secret = await r.keys.create("ci")

        async def broken(key_id: str) -> None:
            from extapi_kit.exceptions import StoreUnavailableError

            raise StoreUnavailableError("down")

        r.keys.store.get = broken  # type: ignore[method-assign]
        resp = await r.post(matches(secret))
        assert resp.status_code == 503 and resp.headers["retry-after"] == "30"
        assert secret not in resp.text
