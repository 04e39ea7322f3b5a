"""The receiving side of GitHub's secret scanning partner program, as an ASGI app.

GitHub (or any scanner speaking the same protocol) POSTs a JSON list of
``{"token", "type", "url", "source"}`` and signs the raw body with ECDSA P-256 / SHA-256: the
``Github-Public-Key-Identifier`` header names the key, ``Github-Public-Key-Signature`` carries the
base64 DER signature. The provider publishes its public keys as JSON
(``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}``, GitHub's at
:data:`GITHUB_KEYS_URL`). The answer is a JSON list of ``{"token_raw" | "token_hash",
"token_type", "label"}`` with ``label`` ``true_positive`` or ``false_positive`` (GitHub's
"false positive feedback" format).

Order of work, cheapest first, so a flood costs little: method, a cap on reports in progress, rate
(an in-process token bucket, not spent by reports the cap refuses), ``Content-Length``, headers,
body read under its cap, signature (keys from the cache; an unknown key id refetches the document at
most once per ``refetch_interval``), then JSON, then the tokens
(:class:`~extapi_kit.keys.leaks.LeakResponder`). Every refusal is a problem+json answer; a failing
store is a 503 the scanner retries (replays are idempotent), never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from extapi_kit._types import Clock, Receive, Scope, Send
from extapi_kit._units import parse_size
from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.keys.leaks import Finding, LeakResponder
from extapi_kit.problems import send_problem

__all__ = ["GITHUB_KEYS_URL", "PublicKeys", "SecretScanningEndpoint"]

logger = logging.getLogger("extapi_kit.keys.leaks")

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_SIGNATURE = 512  # a base64 DER P-256 signature is at most 96 characters
_MAX_KEYS_DOCUMENT = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Key:
    key: ec.EllipticCurvePublicKey
    current: bool


class PublicKeys:
    """The provider's signing keys, fetched with httpx and cached.

    - The document is fetched on first use, then again after ``max_age`` (on the next request).
    - A key id missing from the cache refetches the document, at most once per
      ``refetch_interval`` whatever the ids (a flood of made-up ids costs one fetch per interval).
    - A failed fetch keeps the cached keys working; a fetch never takes longer than ``timeout``.
    - Keys that are not ECDSA P-256 are ignored; ``accept_non_current=False`` also ignores keys
      the document lists with ``"is_current": false`` (by default they are accepted, as GitHub's
      own samples do, since a key being rotated out may still sign requests in flight).

    Args:
        url: the public keys document (default GitHub's).
        headers: extra request headers, e.g. ``{"Authorization": "Bearer <token>"}`` (GitHub
            rate-limits anonymous calls to its API).
        timeout: total deadline of one fetch, in seconds.
        max_age: seconds a fetched document is used before it is refetched.
        refetch_interval: least seconds between two fetches caused by unknown key ids.
        accept_non_current: accept keys marked ``is_current: false``.
        client: an ``httpx.AsyncClient`` to use (tests; else one is created per fetch).
        clock: returns epoch seconds.
    """

    def __init__(
        self,
        url: str = GITHUB_KEYS_URL,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        max_age: float = 3600.0,
        refetch_interval: float = 60.0,
        accept_non_current: bool = True,
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("the public keys URL must be http(s)")
        if timeout <= 0 or max_age <= 0 or refetch_interval < 0:
            raise ConfigurationError("timeout and max_age must be > 0, refetch_interval >= 0")
        self.url = url
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._max_age = max_age
        self._refetch = refetch_interval
        self._accept_non_current = accept_non_current
        self._client = client
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PublicKeys({self.url!r}, {len(self._keys)} cached)"

    @property
    def available(self) -> bool:
        """Whether a document was ever fetched (else every signature is unverifiable: 503)."""
        return self._fetched_at is not None

    @property
    def cached(self) -> frozenset[str]:
        """The key ids held now."""
        return frozenset(self._keys)

    async def get(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """Return the public key with this id, fetching the document when due; None if unknown.

        Args:
            key_id: the ``Github-Public-Key-Identifier`` value.
        """
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
        if stale or key_id not in self._keys:
            await self._maybe_fetch()
        found = self._keys.get(key_id)
        if found is None or (not found.current and not self._accept_non_current):
            return None
        return found.key

    async def _maybe_fetch(self) -> None:
        async with self._lock:
            now = self._clock()
            # At most one attempt per refetch_interval, whatever caused it (a stale document, an
            # unknown id, a failed attempt): made-up ids or a provider outage are not hammered.
            if self._tried_at is not None and now - self._tried_at < self._refetch:
                return
            self._tried_at = now
            try:
                async with asyncio.timeout(self._timeout):
                    keys = await self._fetch()
            except Exception as exc:  # keep what we have: cached keys go on working
                logger.warning(
                    "could not fetch secret scanning public keys from %s: %s",
                    self.url,
                    type(exc).__name__,
                )
                return
            self._keys = keys
            self._fetched_at = self._tried_at = now

    async def _fetch(self) -> dict[str, _Key]:
        headers = {"Accept": "application/json", **self._headers}
        if self._client is not None:
            body = await self._read(self._client, headers)
        else:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                body = await self._read(client, headers)
        return _parse_keys(body)

    async def _read(self, client: httpx.AsyncClient, headers: dict[str, str]) -> bytes:
        async with client.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > _MAX_KEYS_DOCUMENT:
                    raise ValueError("public keys document too large")
                chunks.append(chunk)
        return b"".join(chunks)


def _parse_keys(body: bytes) -> dict[str, _Key]:
    doc = json.loads(body)
    entries = doc.get("public_keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError("no public_keys list")
    keys: dict[str, _Key] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(kid, str) or not _KEY_ID_RE.fullmatch(kid) or not isinstance(pem, str):
            continue
        try:
            key = load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeError, TypeError):
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            continue  # the protocol is ECDSA P-256 only
        keys[kid] = _Key(key, entry.get("is_current") is not False)
    return keys


class _Bucket:
    """A token bucket: ``rate`` per second, up to ``burst`` at once (one per endpoint)."""

    __slots__ = ("_at", "_burst", "_clock", "_level", "_rate")

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._level = float(burst)
        self._at = clock()

    def take(self) -> float | None:
        now = self._clock()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if self._level >= 1:
            self._level -= 1
            return None
        return (1 - self._level) / self._rate


class SecretScanningEndpoint:
    """ASGI app receiving secret scanning reports (mount it at a public path).

    Mount it without API-key authentication: the provider authenticates by signature. In an
    :class:`~extapi_kit.routing.ExternalAPI`::

        api.expose("POST", "/secret-scanning", to=endpoint, public=True, body_limit="1MiB",
                   idempotent=False, include_in_schema=False)

    Args:
        responder: checks the tokens and acts on them.
        public_keys: the provider's keys (:class:`PublicKeys`).
        max_body: request body cap (``"1MiB"``).
        rate: reports accepted per second by this process (token bucket), before any work.
        burst: reports accepted at once after a quiet period.
        max_in_progress: reports being processed at once; more are refused with 429.
        feedback: ``"raw"`` answers ``token_raw`` (the found token, as GitHub's feedback format
            shows it), ``"hash"`` answers ``token_hash`` (its SHA-256, hex) so no token is sent
            back at all.
        clock: returns epoch seconds.
    """

    def __init__(
        self,
        responder: LeakResponder,
        public_keys: PublicKeys,
        *,
        max_body: int | str = "1MiB",
        rate: float = 10.0,
        burst: int = 50,
        max_in_progress: int = 4,
        feedback: str = "raw",
        clock: Clock = time.time,
    ) -> None:
        if feedback not in ("raw", "hash"):
            raise ConfigurationError("feedback must be 'raw' or 'hash'")
        if rate <= 0 or burst < 1 or max_in_progress < 1:
            raise ConfigurationError("rate, burst and max_in_progress must be positive")
        self.responder = responder
        self.public_keys = public_keys
        self.max_body = parse_size(max_body)
        self.feedback = feedback
        self._bucket = _Bucket(rate, burst, clock)
        self._max_in_progress = max_in_progress
        self._in_progress = 0

    def __repr__(self) -> str:
        return f"SecretScanningEndpoint(max_body={self.max_body}, feedback={self.feedback!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request.

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                return await _lifespan(receive, send)
            return None
        if scope["method"] != "POST":
            allow = [(b"allow", b"POST")]
            return await send_problem(send, "method-not-allowed", headers=allow, scope=scope)
        # Busy first: a report refused for the reports in progress spends no rate budget.
        busy = self._in_progress >= self._max_in_progress
        wait = None if busy else self._bucket.take()
        if busy or wait is not None:
            retry = str(max(1, math.ceil(wait or 1))).encode()
            detail = "Too many secret scanning reports at once; retry later."
            await send_problem(
                send, "quota-exceeded", detail, headers=[(b"retry-after", retry)], scope=scope
            )
            return None
        self._in_progress += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self._in_progress -= 1
        return None

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await send_problem(send, "invalid-content-length", scope=scope)
                return
            if int(length) > self.max_body:
                await send_problem(send, "request-too-large", scope=scope)
                return
        kid = headers.get(b"github-public-key-identifier", b"").decode("latin-1").strip()
        sig = headers.get(b"github-public-key-signature", b"").decode("latin-1").strip()
        if not kid or not sig:
            detail = "Github-Public-Key-Identifier and Github-Public-Key-Signature are required."
            await send_problem(send, "unauthorized", detail, scope=scope)
            return
        body = await _read_body(receive, self.max_body)
        if body is None:
            await send_problem(send, "request-too-large", scope=scope)
            return
        if not await self._signed(kid, sig, body):
            if not self.public_keys.available:
                # Nothing to check against yet (the provider's document could not be fetched):
                # the scanner retries later rather than taking this as a refusal.
                detail = "The provider's public keys are unavailable; retry later."
                retry = [(b"retry-after", b"60")]
                await send_problem(send, "service-unavailable", detail, headers=retry, scope=scope)
                return
            await send_problem(send, "unauthorized", "Invalid signature.", scope=scope)
            return
        try:
            findings = _findings(body)
        except _Malformed as exc:
            await send_problem(send, exc.slug, exc.detail, scope=scope)
            return
        if len(findings) > self.responder.max_tokens:
            detail = f"At most {self.responder.max_tokens} tokens per report."
            await send_problem(send, "request-too-large", detail, scope=scope)
            return
        try:
            results = await self.responder.handle(findings, reporter="github")
        except StoreError as exc:
            logger.warning("leak report not processed: store failed (%s)", type(exc).__name__)
            await send_problem(
                send,
                "service-unavailable",
                "The key store is unavailable; retry later.",
                headers=[(b"retry-after", b"30")],
                scope=scope,
            )
            return
        answer = [self._feedback(r.finding, r.label) for r in results]
        out = json.dumps(answer, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(out)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out, "more_body": False})

    async def _signed(self, kid: str, sig: str, body: bytes) -> bool:
        if not _KEY_ID_RE.fullmatch(kid) or len(sig) > _MAX_SIGNATURE:
            return False
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            return False
        key = await self.public_keys.get(kid)
        if key is None:
            logger.info("secret scanning report signed with unknown key id %s", kid[:64])
            return False
        try:
            key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def _feedback(self, finding: Finding, label: str) -> dict[str, str]:
        if self.feedback == "hash":
            digest = hashlib.sha256(finding.token.encode("utf-8", "replace")).hexdigest()
            return {"token_hash": digest, "token_type": finding.type, "label": label}
        return {"token_raw": finding.token, "token_type": finding.type, "label": label}


class _Malformed(Exception):
    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.slug, self.detail = slug, detail


def _findings(body: bytes) -> list[Finding]:
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Malformed("bad-request", "The body is not JSON.") from None
    if not isinstance(doc, list):
        raise _Malformed("validation-error", "The body must be a JSON list of matches.")
    out: list[Finding] = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise _Malformed("validation-error", f"Item {i} is not an object.")
        token = item.get("token")
        if not isinstance(token, str) or not token:
            raise _Malformed("validation-error", f"Item {i}: 'token' must be a non-empty string.")
        fields: dict[str, str] = {}
        for name in ("type", "url", "source"):
            value = item.get(name, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise _Malformed("validation-error", f"Item {i}: {name!r} must be a string.")
            fields[name] = value
        out.append(Finding(token=token, **fields))
    return out


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
