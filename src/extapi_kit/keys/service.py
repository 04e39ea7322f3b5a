"""KeyService: create, list, update, rotate, revoke and verify API keys.

The verify path lives in :mod:`extapi_kit.keys._verify`; this module holds the lifecycle. Every
change goes through the store's ``update`` (which announces it to other processes where the store
can) and drops this process's cache entries for the key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from extapi_kit import telemetry
from extapi_kit._types import Clock
from extapi_kit._units import check_timestamp, parse_duration
from extapi_kit.context import Principal
from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys import _validation as v
from extapi_kit.keys._cache import FailureThrottle, PositiveCache
from extapi_kit.keys._verify import KeyThrottledError, VerifyPath
from extapi_kit.keys.format import (
    DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_PREFIX,
    generate_key,
    generate_key_id,
    parse_key,
    validate_env,
    validate_prefix,
)
from extapi_kit.keys.hashing import Argon2Hasher, Hasher, HashVerifier
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.privilege import check_within
from extapi_kit.keys.store import KeyStore
from extapi_kit.stores import store_from_url

if TYPE_CHECKING:
    from extapi_kit.plans.service import PlanService

__all__ = ["EventCallback", "KeyService", "KeyThrottledError"]

logger = logging.getLogger("extapi_kit.keys")

EventCallback = Callable[[str, KeyRecord], Any]
"""``on_event(event, record)``; sync or async. Events: ``api_key.created``, ``.updated``,
``.rotated`` (record = the new key, ``rotated_from`` names the old one), ``.revoked``."""

_UNSET: Any = object()


class KeyService(VerifyPath):
    """The API key lifecycle and the verify path, over any :class:`KeyStore`.

    Args:
        store: a KeyStore or a store URL (``memory://``, ``sqlite:///keys.db``, ``redis://...``).
        hasher: hasher for new keys (default :class:`Argon2Hasher` at OWASP-minimum parameters).
        extra_hashers: further hashers accepted on verify (e.g. an ``HmacHasher``); keys hashed
            by them are rehashed with ``hasher`` on their next successful verify.
        prefix: the key prefix.
        default_env: environment segment used when ``create`` gets none.
        cache_ttl: seconds a verified key is trusted without a store lookup (0 disables).
        cache_size: maximum cached keys.
        max_key_length: longer presented keys are refused before any work.
        verify_concurrency: worker threads that may hash at once.
        failures_per_ip: failed attempts per client IP per window before that IP gets 429.
        failures_per_key: failed attempts on one key id from one client IP per window before that
            IP gets 429 for that key id. Other IPs are not affected (A16).
        failure_budget_per_key: failed verifications of one key id from all IPs per window; past
            it, only IPs with no failure in the window are still verified (the holder on a clean
            IP always is), so a flood cannot buy unbounded hash work nor lock the key out.
        failure_window: the window, in seconds.
        last_used_interval: at most one ``last_used_at`` write per key per this many seconds.
        on_event: lifecycle callback ``(event, record)``, sync or async.
        clock: returns epoch seconds.
        plans: a :class:`~extapi_kit.plans.PlanService`: keys on a plan (their own or their
            owner's) get its limits, quotas and scope ceiling, resolved when a principal is
            cached (never per request); a plan change drops the cached principals.
    """

    def __init__(
        self,
        store: KeyStore | str,
        *,
        hasher: Hasher | None = None,
        extra_hashers: Sequence[Hasher] = (),
        prefix: str = DEFAULT_PREFIX,
        default_env: str = "live",
        cache_ttl: float = 10.0,
        cache_size: int = 10_000,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        verify_concurrency: int | None = None,
        failures_per_ip: int = 50,
        failures_per_key: int = 20,
        failure_budget_per_key: int = 20,
        failure_window: float = 60.0,
        last_used_interval: float = 60.0,
        on_event: EventCallback | None = None,
        clock: Clock = time.time,
        plans: PlanService | None = None,
    ) -> None:
        if store is None:
            raise ConfigurationError("KeyService needs a store (URL or KeyStore)")
        self._owns_store = isinstance(store, str)
        self.store: KeyStore = store_from_url("keys", store) if isinstance(store, str) else store
        self.prefix = validate_prefix(prefix)
        self.default_env = validate_env(default_env)
        if cache_ttl < 0 or cache_size < 1 or max_key_length < 1 or last_used_interval < 0:
            raise ConfigurationError("cache_ttl, cache_size, max_key_length: out of range")
        self.max_key_length = max_key_length
        self._verifier = HashVerifier(
            hasher or Argon2Hasher(), extra=extra_hashers, max_concurrency=verify_concurrency
        )
        self._cache = PositiveCache(ttl=cache_ttl, max_entries=cache_size)
        self._throttle = FailureThrottle(
            per_ip=failures_per_ip,
            per_key=failures_per_key,
            key_budget=failure_budget_per_key,
            window=failure_window,
        )
        self._last_used_interval = last_used_interval
        self._last_touch: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[bytes, asyncio.Future[Principal]] = {}
        self._watching = False
        self._on_event = on_event
        self._clock = clock
        self._failures = telemetry.counter("extapi.auth.failures", "Failed API key verifications")
        self.plans = plans
        if plans is not None:
            plans.bind_keys(self.store)

    def __repr__(self) -> str:
        return f"KeyService(store={self.store!r}, hasher={self._verifier.hasher!r})"

    @property
    def hasher(self) -> Hasher:
        """The hasher used for new keys."""
        return self._verifier.hasher

    # -- lifecycle ---------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        *,
        env: str | None = None,
        description: str = "",
        owner: str | None = None,
        scopes: Iterable[str] | str = (),
        grants: Mapping[str, Iterable[str]] | None = None,
        rate_limits: Mapping[str, str] | None = None,
        allowed_cidrs: Iterable[str] | str | None = None,
        quota: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: float | None = None,
        expires_in: float | str | None = None,
        within: KeyRecord | None = None,
        plan: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the plaintext key (shown once, never stored).

        Args:
            name: human name.
            env: environment segment (default ``default_env``).
            description: free text.
            owner: owner or tenant id.
            scopes: granted scopes.
            grants: resource grants, type -> ids.
            rate_limits: per-key limits by class.
            allowed_cidrs: networks the key may be used from.
            quota: quota settings.
            metadata: free-form JSON-able data.
            expires_at: absolute expiry (epoch seconds, up to 9999-12-31).
            expires_in: relative expiry (seconds or ``"30d"``, at most 100 years).
            within: the key acting, if any: the new key may not hold more scopes, grants,
                networks or lifetime than it (:mod:`extapi_kit.keys.privilege`, A14).
            plan: the plan the key is on (None: its owner's, if any); needs ``plans``.

        Raises:
            ConfigurationError: a value is invalid or out of range (nothing is stored); an
                unknown plan, or scopes beyond the plan's ceiling (K3).
            PermissionDeniedError: the new key would exceed ``within`` (nothing is stored).
        """
        now = self._clock()
        env = validate_env(env or self.default_env)
        key_id = generate_key_id()
        plaintext = generate_key(prefix=self.prefix, env=env, key_id=key_id)
        parsed = parse_key(plaintext, prefix=self.prefix, max_length=self.max_key_length)
        record = KeyRecord(
            id=key_id,
            display_prefix=parsed.display_prefix,
            env=env,
            name=v.check_name(name),
            hash=await self._verifier.hash(parsed.body),
            created_at=now,
            updated_at=now,
            description=v.check_name(description, "description", max_length=2000)
            if description
            else "",
            owner=v.check_name(owner, "owner") if owner is not None else None,
            scopes=v.check_scopes(scopes),
            grants=v.check_grants(grants),
            rate_limits=v.check_rate_limits(rate_limits),
            allowed_cidrs=v.check_cidrs(allowed_cidrs),
            quota=v.check_quota(quota),
            metadata=v.check_json(metadata, "metadata"),
            expires_at=_expiry(now, expires_at, expires_in),
            plan=plan,
        )
        if within is not None:
            check_within(within, record)
        await self._check_plan(record)
        await self.store.create(record)
        await self._emit("api_key.created", record)
        return record, plaintext

    async def get(self, key_id: str) -> KeyRecord:
        """Return a key's record.

        Args:
            key_id: the key id.

        Raises:
            NotFoundError: no such key.
        """
        record = await self.store.get(key_id)
        if record is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return record

    async def list(
        self,
        *,
        owner: str | None = None,
        env: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], str | None]:
        """Return one page of keys and the next cursor.

        Args:
            owner: owner filter.
            env: env filter.
            status: ``active``, ``rotating``, ``rotated``, ``expired`` or ``revoked``.
            cursor: from a previous page.
            limit: page size.
        """
        return await self.store.list(
            owner=owner, env=env, status=status, now=self._clock(), cursor=cursor, limit=limit
        )

    async def update(
        self,
        key_id: str,
        *,
        name: str = _UNSET,
        description: str = _UNSET,
        owner: str | None = _UNSET,
        scopes: Iterable[str] | str = _UNSET,
        grants: Mapping[str, Iterable[str]] | None = _UNSET,
        metadata: Mapping[str, Any] | None = _UNSET,
        expires_at: float | None = _UNSET,
        expires_in: float | str | None = _UNSET,
        rate_limits: Mapping[str, str] | None = _UNSET,
        allowed_cidrs: Iterable[str] | str | None = _UNSET,
        quota: Mapping[str, Any] | None = _UNSET,
        within: KeyRecord | None = None,
        plan: str | None = _UNSET,
    ) -> KeyRecord:
        """Change a key's settings; only the arguments given are changed.

        Args:
            key_id: the key id.
            name: new name.
            description: new description.
            owner: new owner (None clears).
            scopes: new scopes (replaces).
            grants: new grants (replaces).
            metadata: new metadata (replaces).
            expires_at: new expiry, epoch seconds (None clears).
            expires_in: new expiry relative to now (seconds or ``"30d"``; None: unchanged).
            rate_limits: new per-key limits (replaces).
            allowed_cidrs: new networks (replaces; empty = anywhere).
            quota: new quota settings (replaces).
            within: the key acting, if any: the changed key may not hold more than it (A14).
            plan: the plan the key is on (None: off its own plan, back to its owner's).

        Raises:
            ConfigurationError: a value is invalid or out of range (nothing is stored); an
                unknown plan, or scopes beyond the plan's ceiling (K3).
            PermissionDeniedError: the changed key would exceed ``within`` (nothing is stored).
        """
        record = await self.get(key_id)
        changes: dict[str, Any] = {}
        if name is not _UNSET:
            changes["name"] = v.check_name(name)
        if description is not _UNSET:
            changes["description"] = (
                v.check_name(description, "description", max_length=2000) if description else ""
            )
        if owner is not _UNSET:
            changes["owner"] = v.check_name(owner, "owner") if owner is not None else None
        if scopes is not _UNSET:
            changes["scopes"] = v.check_scopes(scopes)
        if grants is not _UNSET:
            changes["grants"] = v.check_grants(grants)
        if metadata is not _UNSET:
            changes["metadata"] = v.check_json(metadata, "metadata")
        if expires_in is not _UNSET and expires_in is not None:
            given_at = None if expires_at is _UNSET else expires_at
            changes["expires_at"] = _expiry(self._clock(), given_at, expires_in)
        elif expires_at is not _UNSET:
            changes["expires_at"] = _expiry(self._clock(), expires_at, None)
        if rate_limits is not _UNSET:
            changes["rate_limits"] = v.check_rate_limits(rate_limits)
        if allowed_cidrs is not _UNSET:
            changes["allowed_cidrs"] = v.check_cidrs(allowed_cidrs)
        if quota is not _UNSET:
            changes["quota"] = v.check_quota(quota)
        if plan is not _UNSET:
            changes["plan"] = plan
        record = dataclasses.replace(record, updated_at=self._clock(), **changes)
        if within is not None:
            check_within(within, record)
        if {"plan", "scopes", "owner"} & changes.keys():
            await self._check_plan(record)
        await self._save(record)
        await self._emit("api_key.updated", record)
        return record

    async def rotate(
        self, key_id: str, *, grace: float | str = 0, within: KeyRecord | None = None
    ) -> tuple[KeyRecord, str]:
        """Replace a key by a new one with the same settings; return the new record and key.

        The old key keeps working until ``grace`` has passed, never beyond its own expiry.

        Args:
            key_id: the key to replace.
            grace: how long the old key stays valid (seconds or ``"24h"``); 0 ends it now.
            within: the key acting, if any: it may only rotate (and so receive the secret of) a
                key that holds no more than it (A14).

        Raises:
            ConflictError: the key is revoked, expired or already rotated.
            PermissionDeniedError: the key exceeds ``within``.
        """
        grace_s = parse_duration(grace)
        old = await self.get(key_id)
        now = self._clock()
        if old.rotated_to is not None or not old.is_valid(now):
            raise ConflictError(f"API key {key_id!r} is {old.status(now)}; it cannot be rotated")
        if within is not None:
            check_within(within, old)
        new_id = generate_key_id()
        plaintext = generate_key(prefix=self.prefix, env=old.env, key_id=new_id)
        parsed = parse_key(plaintext, prefix=self.prefix, max_length=self.max_key_length)
        new = dataclasses.replace(
            old,
            id=new_id,
            display_prefix=parsed.display_prefix,
            hash=await self._verifier.hash(parsed.body),
            created_at=now,
            updated_at=now,
            last_used_at=None,
            revoked_at=None,
            rotated_to=None,
            rotated_from=old.id,
            rotation_expires_at=None,
            lineage_id=old.lineage,  # I6: the successor keeps the chain's idempotency records
        )
        await self.store.create(new)
        end = now + grace_s
        if old.expires_at is not None:
            end = min(end, old.expires_at)
        await self._save(
            dataclasses.replace(old, rotated_to=new_id, rotation_expires_at=end, updated_at=now)
        )
        await self._emit("api_key.rotated", new)
        return new, plaintext

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key now. Idempotent.

        In this process the key stops working at once; other processes drop it from their cache
        within 1 s with the Redis store (pub/sub), otherwise within ``cache_ttl``.

        Args:
            key_id: the key id.
        """
        record = await self.get(key_id)
        if record.revoked_at is not None:
            return record
        now = self._clock()
        record = dataclasses.replace(record, revoked_at=now, updated_at=now)
        await self._save(record)
        await self._emit("api_key.revoked", record)
        return record

    async def secret_matches(self, record: KeyRecord, presented: str) -> bool:
        """Return whether a presented key is ``record``'s key (checksum and hash; not its status).

        For leak reports (:mod:`extapi_kit.keys.leaks`): no cache, no failed-attempt throttle,
        no last-used write. The hash is verified in a worker thread like on the verify path.

        Args:
            record: the stored key the presented one names.
            presented: the presented key (never stored or logged).
        """
        parsed = parse_key(presented, prefix=self.prefix, max_length=self.max_key_length)
        if parsed.key_id != record.id or parsed.env != record.env:
            return False
        ok, _ = await self._verifier.verify(record.hash, parsed.body)
        return ok

    async def mark_leaked(self, key_id: str, *, revoke: bool, grace: float | str = 0) -> KeyRecord:
        """Record that a key's secret was found in public; revoke it, or cap its expiry.

        Idempotent: a key already marked keeps its first ``leaked_at`` and grace end. With
        ``revoke=False`` the key keeps working until ``now + grace`` (never beyond its own
        expiry), unless an operator revokes, rotates or re-extends it first.

        Args:
            key_id: the key id.
            revoke: revoke now (``api_key.revoked``) instead of a grace period.
            grace: how long a flagged key keeps working (seconds or ``"24h"``).
        """
        grace_s = parse_duration(grace)
        record = await self.get(key_id)
        now = self._clock()
        changes: dict[str, Any] = {}
        if record.leaked_at is None:
            changes["leaked_at"] = now
        if revoke and record.revoked_at is None:
            changes["revoked_at"] = now
        elif not revoke and record.leaked_at is None:
            end = check_timestamp(now + grace_s, "expires_at")
            if record.expires_at is None or record.expires_at > end:
                changes["expires_at"] = end
        if not changes:
            return record
        record = dataclasses.replace(record, updated_at=now, **changes)
        await self._save(record)
        event = "api_key.revoked" if "revoked_at" in changes else "api_key.updated"
        await self._emit(event, record)
        return record

    async def _check_plan(self, record: KeyRecord) -> None:
        # K3: a key on a plan may not hold scopes beyond its ceiling; refused here so operators
        # see it at once, and intersected again at use (a plan narrowed later still binds).
        plans = self.plans
        if plans is None:
            if record.plan is not None:
                raise ConfigurationError("plan: this key service has no plans configured")
            return
        await plans.check_key(record.plan, record.owner, record.scopes)

    async def _save(self, record: KeyRecord) -> None:
        try:
            await self.store.update(record)
        finally:
            self._cache.invalidate(record.id)

    async def _emit(self, event: str, record: KeyRecord) -> None:
        if self._on_event is None:
            return
        try:
            result = self._on_event(event, record)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_event callback failed for %s (key %s)", event, record.id)

    async def aclose(self) -> None:
        """Finish background writes and close the store if this service created it."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5.0)
        if self._owns_store:
            await self.store.aclose()


def _expiry(now: float, expires_at: float | None, expires_in: float | str | None) -> float | None:
    if expires_at is not None and expires_in is not None:
        raise ConfigurationError("give expires_at or expires_in, not both")
    # Both are bounded (M7): an unbounded expiry was stored and then broke every listing that
    # rendered it as a date.
    if expires_in is not None:
        return check_timestamp(now + parse_duration(expires_in), "expires_at")
    if expires_at is not None:
        return check_timestamp(expires_at, "expires_at")
    return None
