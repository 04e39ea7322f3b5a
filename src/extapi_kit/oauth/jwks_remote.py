"""An external identity provider's JWKS, fetched with httpx and cached by its HTTP cache headers.

Never an outage per request (issue 19 §4):

- keys are cached for ``Cache-Control: max-age`` (or ``Expires`` - ``Date``), clamped to
  ``[min_ttl, max_ttl]``; a stale set keeps answering while one background refresh runs;
- an unknown ``kid`` triggers a refetch at most once per ``refetch_interval`` seconds (a flood of
  invented ``kid`` values costs the provider one request per interval, not one per token);
- concurrent needs share one fetch (single flight), and a request waits for it at most
  ``deadline`` seconds; the fetch itself is bounded by ``timeout`` and ``max_bytes``;
- a failed, slow or garbage answer keeps the cached keys; only when no key set was ever fetched
  does :meth:`RemoteJWKS.find` raise :class:`JWKSUnavailableError` (the middleware answers 503).

Keys marked ``"use": "enc"``, keys carrying private members, keys without ``kid`` and keys
joserfc cannot import are skipped; a document without a ``keys`` list is garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from joserfc.jwk import JWKRegistry, Key

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError, StoreUnavailableError

__all__ = ["JWKSUnavailableError", "RemoteJWKS", "keys_from_jwks"]

logger = logging.getLogger("extapi_kit.oauth")

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\b", re.IGNORECASE)
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
_MAX_KEYS = 100


class JWKSUnavailableError(StoreUnavailableError):
    """No key set could be fetched from the identity provider (and none is cached)."""


def keys_from_jwks(document: Any, *, allow_symmetric: bool = False) -> dict[str, Key]:
    """Return the usable signature keys of a JWKS document by ``kid``.

    Args:
        document: the parsed JSON (``{"keys": [...]}``).
        allow_symmetric: keep ``oct`` keys (only for a local, configured set).

    Raises:
        ValueError: the document is not a JWKS.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    out: dict[str, Key] = {}
    for item in document["keys"][:_MAX_KEYS]:
        if not isinstance(item, dict):
            continue
        kid = item.get("kid")
        if not isinstance(kid, str) or not kid or item.get("use", "sig") != "sig":
            continue
        if item.get("kty") == "oct" and not allow_symmetric:
            continue  # a published symmetric key would be a shared secret: never trust one
        if item.get("kty") != "oct" and _PRIVATE_MEMBERS & item.keys():
            continue
        try:
            out[kid] = JWKRegistry.import_key(item)
        except Exception:  # unsupported kty/crv or a malformed member: skip that key only
            continue
    return out


def _lifetime(headers: httpx.Headers, default: float) -> float:
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        return 0.0
    found = _MAX_AGE.search(control)
    if found:
        return float(found.group(1))
    expires = headers.get("expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
            date = headers.get("date")
            base = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
        except (TypeError, ValueError):
            return 0.0  # an invalid Expires means "already expired" (RFC 9111 §5.3)
        return max(0.0, when - base)
    return default


class RemoteJWKS:
    """A JWKS URL of an identity provider, as a key source for the token verifier.

    Args:
        url: the JWKS URL (``https://tenant.auth0.com/.well-known/jwks.json``).
        default_ttl: seconds to cache when the answer has no cache headers.
        min_ttl: never refetch a good set sooner than this (also used for ``no-cache``).
        max_ttl: never trust a set longer than this without trying to refetch.
        refetch_interval: at most one refetch per this many seconds for an unknown ``kid``, and
            after a failed fetch.
        deadline: the longest a request waits for a fetch in flight.
        timeout: the fetch's own limit (connect, read, whole exchange).
        max_bytes: larger answers are garbage.
        client: an httpx client to use (default: one the source creates and closes).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        default_ttl: float = 300.0,
        min_ttl: float = 30.0,
        max_ttl: float = 86_400.0,
        refetch_interval: float = 30.0,
        deadline: float = 2.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"JWKS URL must be http(s): {url!r}")
        if not 0 <= min_ttl <= max_ttl or refetch_interval < 0 or deadline <= 0 or timeout <= 0:
            raise ConfigurationError("RemoteJWKS: ttl, interval, deadline or timeout out of range")
        self.url = url
        self.default_ttl = default_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.refetch_interval = refetch_interval
        self.deadline = deadline
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fresh_until = 0.0
        self._last_attempt: float | None = None
        self._last_ok = False
        self._task: asyncio.Task[None] | None = None
        #: Bumped whenever the key set changes; the verifier's cache re-checks tokens then.
        self.version = 0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"RemoteJWKS(url={self.url!r}, keys={len(self._keys)})"

    @property
    def kids(self) -> frozenset[str]:
        """The ``kid`` values currently known."""
        return frozenset(self._keys)

    async def find(self, kid: str) -> Key | None:
        """Return the key for ``kid``, fetching when unknown (rate-limited) or stale.

        Args:
            kid: the token's ``kid``.

        Raises:
            JWKSUnavailableError: no key set was ever fetched and fetching failed now.
        """
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None:
            if now >= self._fresh_until and self._may_fetch(now):
                self._start_fetch()  # stale: refresh in the background, answer from the cache
            return key
        if self._may_fetch(now) or self._task is not None:
            await self._await_fetch()
        key = self._keys.get(kid)
        if key is None and not self._keys and not self._last_ok:
            raise JWKSUnavailableError(f"could not fetch the JWKS at {self.url}")
        return key

    async def refresh(self) -> None:
        """Fetch the key set now (waiting at most ``deadline``); keeps the old set on failure."""
        await self._await_fetch()

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.refetch_interval

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._task is None:
            self._last_attempt = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._fetch())
            self._task.add_done_callback(self._fetched)
        return self._task

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled():
            task.exception()  # _fetch logs its own failures; never "exception never retrieved"

    async def _await_fetch(self) -> None:
        task = self._start_fetch()
        # The fetch goes on in the background past the deadline; this request does not wait.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), self.deadline)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout):
                body, headers = await self._get()
            keys = keys_from_jwks(json.loads(body))
        except Exception as exc:
            self._last_ok = False
            logger.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            return
        if not keys:
            self._last_ok = False
            logger.warning(
                "JWKS at %s holds no usable signature key; keeping the old set", self.url
            )
            return
        lifetime = min(max(_lifetime(headers, self.default_ttl), self.min_ttl), self.max_ttl)
        self._fresh_until = self._clock() + lifetime
        self._last_ok = True
        if _public(keys) != _public(self._keys):
            self._keys = keys
            self.version += 1

    async def _get(self) -> tuple[bytes, httpx.Headers]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        async with self._client.stream(
            "GET", self.url, headers={"accept": "application/jwk-set+json, application/json"}
        ) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise ValueError("JWKS answer too large")
                chunks.append(chunk)
            return b"".join(chunks), response.headers

    async def aclose(self) -> None:
        """Stop a fetch in flight and close the HTTP client if this source created it."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None


def _public(keys: Mapping[str, Key]) -> dict[str, Any]:
    return {kid: key.as_dict(private=False) for kid, key in keys.items()}
