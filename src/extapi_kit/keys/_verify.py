"""The verify path of :class:`~extapi_kit.keys.service.KeyService`, cheapest checks first::

    length/ascii -> positive cache (HMAC of the key) -> parse + checksum -> shared in-flight verify
    -> failed-attempt throttle -> store lookup by key id -> hash verify in a worker thread
    -> status -> cache

Malformed input never reaches the store or the hasher (A3). The cache comes before the throttle so
a key that is already verified keeps working while someone floods wrong secrets for its id (A4).
The throttle refuses failing *sources* (per IP, per IP and key id), never a key id for everyone:
when a key id's failure budget is spent, a source without recent failures is still verified, so
knowing a key id is not enough to lock its holder out (A16). Only refused keys count as failures;
a store error is an outage, not an attempt (A15).
For a known key id the hash is verified *before* its status is looked at, so a revoked or expired
key costs the same as a live one with a wrong secret; unknown ids are not hashed at all, which is
safe because ids carry 128 random bits (A2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any, NoReturn

from extapi_kit._types import Clock
from extapi_kit.context import Principal
from extapi_kit.exceptions import InvalidKeyError
from extapi_kit.keys._cache import FailureThrottle, PositiveCache
from extapi_kit.keys.format import ParsedKey, parse_key
from extapi_kit.keys.hashing import HashVerifier
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import KeyStore

if TYPE_CHECKING:
    from extapi_kit.plans.service import PlanService

__all__ = ["KeyThrottledError", "VerifyPath"]

logger = logging.getLogger("extapi_kit.keys")


class KeyThrottledError(InvalidKeyError):
    """Too many failed attempts from this client (in all, or for this key id); retry later.

    Args:
        retry_after: seconds until attempts are counted afresh.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed attempts")
        self.retry_after = retry_after


class VerifyPath:
    """Verification, caching, throttling and last-used tracking (mixed into KeyService)."""

    store: KeyStore
    prefix: str
    max_key_length: int
    _clock: Clock
    _cache: PositiveCache
    _throttle: FailureThrottle
    _verifier: HashVerifier
    _failures: Any
    _inflight: dict[bytes, asyncio.Future[Principal]]
    _watching: bool
    _last_touch: dict[str, float]
    _last_used_interval: float
    _tasks: set[asyncio.Task[None]]
    plans: PlanService | None

    async def _save(self, record: KeyRecord) -> None:
        raise NotImplementedError

    async def verify(self, presented: str, *, client_ip: str | None = None) -> Principal:
        """Verify a presented key and return its principal.

        Args:
            presented: the key as the client sent it.
            client_ip: the resolved client address, for the failed-attempt throttle.

        Raises:
            KeyThrottledError: too many failed attempts (answer 429).
            InvalidKeyError: any malformed, unknown, revoked, expired or wrong key (answer 401).
            StoreError: the store failed and the key was not cached (answer 503).
        """
        now = self._clock()
        if not isinstance(presented, str) or len(presented) > self.max_key_length:
            self._fail("malformed", client_ip, now)
        if not presented.isascii():
            self._fail("malformed", client_ip, now)
        digest = self._cache.digest(presented)
        entry = self._cache.get(digest, now)
        if entry is not None:
            self._note_used(entry.key_id, now)
            return entry.principal
        try:
            parsed = parse_key(presented, prefix=self.prefix, max_length=self.max_key_length)
        except InvalidKeyError:
            self._fail("malformed", client_ip, now)
        # Concurrent verifies of the same presented key share one lookup and one hash; joining
        # one costs nothing, so it comes before the throttle (a holder's burst is one attempt).
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        wait = self._throttle.blocked(client_ip, parsed.key_id, now)
        if wait is not None:
            self._failures.add(1, {"reason": "throttled"})
            throttled = KeyThrottledError(wait)
            # Key analytics count it for this key id only if the key already has activity.
            throttled.key_id, throttled.reason = parsed.key_id, "throttled"  # type: ignore[attr-defined]
            raise throttled
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            principal = await self._verify_uncached(parsed, digest, client_ip, now)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: there may be no other waiter
            raise
        else:
            future.set_result(principal)
            return principal
        finally:
            del self._inflight[digest]

    async def _verify_uncached(
        self, parsed: ParsedKey, digest: bytes, client_ip: str | None, now: float
    ) -> Principal:
        # The attempt counts toward the limits while in flight, so a burst of concurrent wrong
        # keys cannot all pass the check before the first one fails. It becomes a failure only if
        # the key is refused: a store error or timeout is not the client's fault (A15).
        key_id = parsed.key_id
        self._throttle.begin(client_ip, key_id)
        failed = hashed = False
        try:
            await self._ensure_watch()
            generation = self._cache.generation
            record = await self.store.get(key_id)
            if record is None:
                self._reject("unknown", key_id)
            hashed = True
            ok, new_hash = await self._verifier.verify(record.hash, parsed.body)
            if not ok:
                self._reject("mismatch", key_id)
            now = self._clock()
            if record.env != parsed.env or not record.is_valid(now):
                self._reject(record.status(now), key_id)
        except InvalidKeyError:
            failed = True
            raise
        except asyncio.CancelledError:
            failed = hashed  # hash work was spent on it: count it like a refusal
            raise
        finally:
            self._throttle.end(client_ip, key_id, self._clock(), failed=failed, hashed=hashed)
        if new_hash is not None:
            await self._rehash(record, new_hash)
            generation = self._cache.generation
        principal = record.to_principal()
        until = now + self._cache.ttl
        plans = self.plans
        if plans is not None:
            # Resolved once per cached principal, never per request (issue 20: a plan adds
            # nothing to a cache hit); a plan change bumps the generation, so a principal built
            # from the old plan while it changed is not cached.
            principal, plan_until = await plans.principal(principal, record.plan, record.owner)
            until = min(until, plan_until)
        valid_until = record.valid_until()
        if valid_until is not None:
            until = min(until, valid_until)
        if self._cache.generation == generation:
            self._cache.put(digest, record.id, principal, until)
        self._note_used(record.id, now)
        return principal

    def _fail(self, reason: str, client_ip: str | None, now: float) -> NoReturn:
        self._throttle.record(client_ip, None, now)
        self._reject(reason, None)

    def _reject(self, reason: str, key_id: str | None) -> NoReturn:
        self._failures.add(1, {"reason": reason})
        logger.debug("API key rejected: %s (key id %s)", reason, key_id or "-")
        error = InvalidKeyError("invalid API key")
        error.reason = reason  # type: ignore[attr-defined]
        if key_id is not None and reason != "unknown":
            error.key_id = key_id  # type: ignore[attr-defined]  # an existing key (analytics)
        raise error

    async def _rehash(self, record: KeyRecord, new_hash: str) -> None:
        try:
            current = await self.store.get(record.id)
            if current is not None and current.hash == record.hash:
                await self._save(dataclasses.replace(current, hash=new_hash))
        except Exception as exc:  # a failed rehash must not fail a valid request
            logger.warning("could not rehash key %s: %s", record.id, type(exc).__name__)

    async def _ensure_watch(self) -> None:
        if self._watching:
            return
        self._watching = True
        if self.plans is not None:
            await self.plans.listen(self._cache.invalidate)
        watch = getattr(self.store, "watch", None)
        if watch is None:
            return
        try:
            await watch(self._cache.invalidate)
        except Exception as exc:
            logger.warning("could not watch key changes: %s", type(exc).__name__)

    def throttle_wait(self, client_ip: str | None) -> float | None:
        """Return the seconds a source past its failed-attempt budget must wait, or None.

        The same per-source budget wrong keys spend: an access token that fails verification
        spends it too (:meth:`note_failure`), so forging tokens costs an address what guessing
        keys does.

        Args:
            client_ip: the resolved client address (None: not throttled per source).
        """
        return self._throttle.blocked(client_ip, None, self._clock())

    def note_failure(self, client_ip: str | None) -> None:
        """Count one failed attempt by a source (a token that did not verify).

        Args:
            client_ip: the resolved client address.
        """
        self._failures.add(1, {"reason": "token"})
        self._throttle.record(client_ip, None, self._clock())

    def note_used(self, key_id: str, now: float) -> None:
        """Record that a key was used now (another way in, such as an access token it issued):
        its ``last_used_at`` is written in the background, at most once per interval.

        Args:
            key_id: the key.
            now: epoch seconds.
        """
        self._note_used(key_id, now)

    def _note_used(self, key_id: str, now: float) -> None:
        last = self._last_touch.get(key_id)
        if last is not None and now - last < self._last_used_interval:
            return
        self._last_touch.pop(key_id, None)
        if len(self._last_touch) >= 100_000:
            del self._last_touch[next(iter(self._last_touch))]
        self._last_touch[key_id] = now
        task = asyncio.get_running_loop().create_task(self._touch(key_id, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, key_id: str, when: float) -> None:
        try:
            await self.store.touch(key_id, when)
        except Exception as exc:  # off the request path; the next use retries
            self._last_touch.pop(key_id, None)
            logger.warning("could not record last use of key %s: %s", key_id, type(exc).__name__)

    async def flush(self) -> None:
        """Wait for pending background writes (last-used times)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
