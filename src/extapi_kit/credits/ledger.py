"""The credit ledger: the per-request spend, top-ups with their log, and the notifications.

:class:`CreditLedger` is what the middleware, the admin routes and the CLI share. The hot path
is :meth:`CreditLedger.spend` (one atomic store call for a metered key; on memory a few dict
operations), or :meth:`CreditLedger.settle` when the rate limiter already spent the credits in
its own Redis script. Keys that carry no balance are remembered as unmetered for
``metered_ttl`` seconds on a shared store, so they cost no store call on most requests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.credits.models import (
    EVENT_EXHAUSTED,
    EVENT_LOW,
    CreditEntry,
    Spend,
    key_subject,
    owner_subject,
    subject_label,
)
from extapi_kit.credits.store import CreditStore
from extapi_kit.credits.store_memory import MemoryCreditStore
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores import register_store, store_from_url

__all__ = ["CreditDecision", "CreditLedger", "EventCallback"]

logger = logging.getLogger("extapi_kit.credits")

EventCallback = Callable[[str, dict[str, Any]], Awaitable[Any] | Any]

for _scheme, _target in (
    ("memory", "extapi_kit.credits.store_memory:MemoryCreditStore"),
    ("sqlite", "extapi_kit.credits.store_sqlite:SQLiteCreditStore"),
    ("redis", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("rediss", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("unix", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("redis+cluster", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("rediss+cluster", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("redis+sentinel", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("rediss+sentinel", "extapi_kit.credits.store_redis:RedisCreditStore"),
    ("postgresql", "extapi_kit.credits.store_postgres:PostgresCreditStore"),
    ("postgres", "extapi_kit.credits.store_postgres:PostgresCreditStore"),
):
    register_store("credits", _scheme, _target)

DEFAULT_LOW_THRESHOLD = 10
DEFAULT_METERED_TTL = 5.0
_MAX_UNMETERED = 100_000


class CreditDecision:
    """The outcome of spending one request's credits.

    Args:
        allowed: whether every metered balance could pay (then all were charged).
        subjects: the request's subjects (key first, then owner).
        spend: the store's answer.
        cost: credits the request costs.
    """

    __slots__ = ("allowed", "cost", "remaining", "spend", "subjects")

    def __init__(self, allowed: bool, subjects: tuple[str, ...], spend: Spend, cost: int) -> None:
        self.allowed = allowed
        self.subjects = subjects
        self.spend = spend
        self.cost = cost
        balances = spend.balances
        if len(balances) == 1:  # the common case, without a list and min()
            left = balances[0]
        else:
            left = min((b for b in balances if b is not None), default=None)
        #: the smallest metered balance after this request: what the client can still spend.
        self.remaining: int = left if left is not None else 0

    def __repr__(self) -> str:
        return f"CreditDecision(allowed={self.allowed}, remaining={self.remaining})"

    def refused_by(self) -> list[str]:
        """Return ``"key"``/``"owner"`` for each balance that could not pay."""
        return [
            subject_label(s)[0]
            for s, b in zip(self.subjects, self.spend.balances, strict=True)
            if b is not None and b < self.cost
        ]


class CreditLedger:
    """Credit balances of keys and owners: spend, top up, log, notify.

    Args:
        store: a :class:`~extapi_kit.credits.store.CreditStore` or a URL (``memory://``,
            ``sqlite:///credits.db``, ``redis://host:6379/0``, ``postgresql://...``).
        low_threshold: ``credits.low`` fires once when a balance goes from above this figure to
            at or below it (a top-up above it re-arms it); 0 turns it off.
        on_event: ``(type, data)`` callback, sync or async, for ``credits.low`` and
            ``credits.exhausted``; ``WebhookDispatcher.publish`` fits. Called off the request
            path.
        metered_ttl: seconds a key found without any balance is remembered as unmetered on a
            shared store (no store call meanwhile); a balance given to it by another process
            applies within this delay, one given through this ledger at once.
        clock: returns epoch seconds (change log timestamps).
    """

    def __init__(
        self,
        store: CreditStore | str = "memory://",
        *,
        low_threshold: int = DEFAULT_LOW_THRESHOLD,
        on_event: EventCallback | None = None,
        metered_ttl: float = DEFAULT_METERED_TTL,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(low_threshold, bool) or not isinstance(low_threshold, int):
            raise ConfigurationError(f"low_threshold must be an integer: {low_threshold!r}")
        if low_threshold < 0:
            raise ConfigurationError(f"low_threshold must be >= 0: {low_threshold!r}")
        if not metered_ttl >= 0:
            raise ConfigurationError(f"metered_ttl must be >= 0: {metered_ttl!r}")
        self._owns_store = isinstance(store, str)
        self.store: CreditStore = (
            store_from_url("credits", store) if isinstance(store, str) else store
        )
        self.low_threshold = low_threshold
        self._on_event = on_event
        self._ttl = metered_ttl
        self.clock: Clock = clock or time.time
        # A memory store answers faster than a cache lookup would save.
        self._remember = metered_ttl > 0 and not isinstance(self.store, MemoryCreditStore)
        self._unmetered: dict[tuple[str, ...], float] = {}
        self._subjects: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"CreditLedger(store={self.store!r}, low_threshold={self.low_threshold})"

    # -- hot path ----------------------------------------------------------------------------

    def subjects(self, key_id: str, owner: str | None) -> tuple[str, ...]:
        """Return the subjects a request of this key spends from (key, then owner).

        Args:
            key_id: the key id.
            owner: its owner, if any.
        """
        k = (key_id, owner)
        found = self._subjects.get(k)
        if found is None:
            if len(self._subjects) >= 10_000:
                self._subjects.clear()
            found = self._subjects[k] = (
                (key_subject(key_id),)
                if owner is None
                else (key_subject(key_id), owner_subject(owner))
            )
        return found

    async def spend(self, key_id: str, owner: str | None, cost: int) -> CreditDecision | None:
        """Spend a request's credits; None when neither the key nor its owner is metered.

        Args:
            key_id: the key id.
            owner: its owner.
            cost: credits the request costs.

        Raises:
            StoreError: the store failed (the middleware applies its failure policy).
        """
        subjects = self.subjects(key_id, owner)
        if self._remember:
            until = self._unmetered.get(subjects)
            if until is not None:
                if self.clock() < until:
                    return None
                del self._unmetered[subjects]
        spend = await self.store.spend(subjects, cost)
        if not spend.metered:
            if self._remember:
                if len(self._unmetered) >= _MAX_UNMETERED:
                    self._unmetered.clear()
                self._unmetered[subjects] = self.clock() + self._ttl
            return None
        return self.settle(key_id, owner, subjects, spend, cost)

    def settle(
        self, key_id: str, owner: str | None, subjects: tuple[str, ...], spend: Spend, cost: int
    ) -> CreditDecision | None:
        """Turn a spend's figures into a decision and queue the notifications it crossed.

        The rate limiter calls this when it spent the credits in its own Redis script.

        Args:
            key_id: the key id.
            owner: its owner.
            subjects: the subjects spent from.
            spend: the figures.
            cost: credits the request costs.
        """
        if not spend.metered:
            return None
        decision = CreditDecision(spend.allowed, subjects, spend, cost)
        if self._on_event is None:
            return decision
        low = self.low_threshold
        for subject, after, marked in zip(subjects, spend.balances, spend.exhausted, strict=True):
            if after is None:
                continue
            # A spend moves a balance down atomically, so exactly one request sees each crossing.
            if low and spend.allowed and cost and after + cost > low >= after:
                self._emit(EVENT_LOW, subject, key_id, owner, after, cost)
            if marked:
                self._emit(EVENT_EXHAUSTED, subject, key_id, owner, after, cost)
        return decision

    def settle_figures(
        self,
        key_id: str,
        owner: str | None,
        subjects: tuple[str, ...],
        allowed: bool,
        figures: list[int],
        cost: int,
    ) -> CreditDecision | None:
        """Settle the flat figures of the rate limiter's script (``[balance, mark, ...]``).

        Args:
            key_id: the key id.
            owner: its owner.
            subjects: the subjects spent from.
            allowed: whether every balance could pay.
            figures: per subject its balance (-1: not metered) and 1 when the exhausted mark
                was set by this call.
            cost: credits the request costs.
        """
        balances: list[int | None] = []
        marks: list[bool] = []
        for i in range(0, len(figures), 2):
            b = int(figures[i])
            balances.append(None if b < 0 else b)
            marks.append(int(figures[i + 1]) == 1)
        return self.settle(key_id, owner, subjects, Spend(allowed, balances, marks), cost)

    def _emit(
        self, kind: str, subject: str, key_id: str, owner: str | None, left: int, cost: int
    ) -> None:
        scope, _ = subject_label(subject)
        data: dict[str, Any] = {
            "key_id": key_id,
            "owner": owner,
            "scope": scope,
            "remaining": left,
        }
        if kind == EVENT_LOW:
            data["threshold"] = self.low_threshold
        else:
            data["cost"] = cost
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - the hot path always runs in a loop
            return
        task = loop.create_task(self._notify(kind, data))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _notify(self, kind: str, data: dict[str, Any]) -> None:
        callback = self._on_event
        if callback is None:  # pragma: no cover - checked before spawning
            return
        try:
            result = callback(kind, data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("credits notification %s failed", kind)

    async def flush(self) -> None:
        """Wait for the notifications queued so far (tests and shutdown)."""
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)

    # -- operator side -----------------------------------------------------------------------

    @staticmethod
    def _subject(key_id: str | None, owner: str | None) -> str:
        if (key_id is None) == (owner is None):
            raise ConfigurationError("name exactly one of a key id or an owner")
        if key_id is not None:
            if not key_id:
                raise ConfigurationError("the key id must not be empty")
            return key_subject(key_id)
        if not owner:
            raise ConfigurationError("the owner must not be empty")
        return owner_subject(owner)

    async def balance(self, *, key_id: str | None = None, owner: str | None = None) -> int | None:
        """Return the balance of a key or an owner (None: not metered).

        Args:
            key_id: the key id.
            owner: the owner id.
        """
        return await self.store.get(self._subject(key_id, owner))

    async def _change(
        self,
        action: str,
        amount: int,
        key_id: str | None,
        owner: str | None,
        actor: str,
        reason: str | None,
    ) -> CreditEntry:
        subject = self._subject(key_id, owner)
        if reason is not None and len(reason) > 500:
            raise ConfigurationError("a reason is at most 500 characters")
        entry = await self.store.change(
            subject, action=action, amount=amount, actor=actor, reason=reason, at=self.clock()
        )
        # A key this process remembered as unmetered is metered from now on.
        self._unmetered.clear()
        logger.info(
            "credits %s %s of %s: %s -> %s (by %s)",
            action,
            amount,
            subject,
            entry.before,
            entry.after,
            actor,
        )
        return entry

    async def set(
        self,
        amount: int,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        actor: str = "admin",
        reason: str | None = None,
    ) -> CreditEntry:
        """Set a balance (and re-arm the exhausted notification); the change is logged.

        Args:
            amount: the new balance (>= 0).
            key_id: the key id (or ``owner``).
            owner: the owner id.
            actor: who makes the change (recorded).
            reason: why (recorded).
        """
        return await self._change("set", amount, key_id, owner, actor, reason)

    async def add(
        self,
        amount: int,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        actor: str = "admin",
        reason: str | None = None,
    ) -> CreditEntry:
        """Top up a balance (negative: take back, never below 0); the change is logged.

        An unmetered key or owner starts from 0.

        Args:
            amount: credits to add.
            key_id: the key id (or ``owner``).
            owner: the owner id.
            actor: who makes the change (recorded).
            reason: why (recorded).
        """
        return await self._change("add", amount, key_id, owner, actor, reason)

    async def clear(
        self,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        actor: str = "admin",
        reason: str | None = None,
    ) -> CreditEntry:
        """Remove a balance: the key or owner is no longer limited by credits (logged).

        Args:
            key_id: the key id (or ``owner``).
            owner: the owner id.
            actor: who makes the change (recorded).
            reason: why (recorded).
        """
        return await self._change("clear", 0, key_id, owner, actor, reason)

    async def history(
        self, *, key_id: str | None = None, owner: str | None = None, limit: int = 20
    ) -> list[CreditEntry]:
        """Return the latest operator changes of a balance, newest first.

        Args:
            key_id: the key id (or ``owner``).
            owner: the owner id.
            limit: how many.
        """
        return await self.store.history(self._subject(key_id, owner), limit)

    async def create_key(
        self,
        keys: Any,
        name: str,
        *,
        uses: int,
        actor: str = "admin",
        **create: Any,
    ) -> tuple[Any, str]:
        """Create a key that works ``uses`` times (``uses=1``: a one-time key).

        The key is created with :meth:`KeyService.create` and given a balance of ``uses``; each
        request spends its route's ``cost`` (1 unless the route says otherwise). If the balance
        cannot be written the key is revoked before the error is raised, so no key ever exists
        without its limit.

        Args:
            keys: the :class:`~extapi_kit.keys.service.KeyService`.
            name: the key's name.
            uses: how many uses (>= 1).
            actor: who creates it (recorded in the credits log).
            **create: further :meth:`KeyService.create` arguments (``owner``, ``scopes`` ...).

        Returns:
            ``(record, secret)`` as :meth:`KeyService.create` returns them.
        """
        if isinstance(uses, bool) or not isinstance(uses, int) or uses < 1:
            raise ConfigurationError(f"uses must be an integer >= 1: {uses!r}")
        record, secret = await keys.create(name, **create)
        try:
            await self.set(uses, key_id=record.id, actor=actor, reason=f"created with uses={uses}")
        except BaseException:
            await keys.revoke(record.id)
            raise
        return record, secret

    async def aclose(self) -> None:
        """Wait for queued notifications and close a store this ledger opened."""
        if self._closed:
            return
        self._closed = True
        await self.flush()
        if self._owns_store:
            await self.store.aclose()
