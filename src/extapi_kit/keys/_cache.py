"""In-process state of the verify path: the positive cache and the failed-attempt throttle."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from extapi_kit.context import Principal

__all__ = ["CacheEntry", "FailureThrottle", "PositiveCache"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A verified key: its principal and until when the cache may vouch for it."""

    key_id: str
    principal: Principal
    until: float


class PositiveCache:
    """Recently verified keys, keyed by a keyed BLAKE2b MAC of the presented key (per-process key).

    The presented key itself is never kept (case A10); the HMAC key never leaves the process, so
    the cache contents are useless to anyone who dumps them.
    """

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._mac_key = secrets.token_bytes(32)
        self._entries: dict[bytes, CacheEntry] = {}
        self._by_key: dict[str, set[bytes]] = {}
        # Bumped on every invalidation, so a verify that raced with a revocation does not cache.
        self.generation = 0

    def __repr__(self) -> str:
        return f"PositiveCache(ttl={self.ttl}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, presented: str) -> bytes:
        # Keyed BLAKE2b is a MAC in its own right (no HMAC construction needed) and about 2x
        # cheaper than HMAC-SHA256 here; the cache key is still never the presented key.
        return hashlib.blake2b(
            presented.encode("ascii", "replace"), key=self._mac_key, digest_size=32
        ).digest()

    def get(self, digest: bytes, now: float) -> CacheEntry | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry.until:
            self._drop(digest, entry.key_id)
            return None
        return entry

    def put(self, digest: bytes, key_id: str, principal: Principal, until: float) -> None:
        if self.ttl <= 0:
            return
        while len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest, self._entries[oldest].key_id)
        self._entries[digest] = CacheEntry(key_id, principal, until)
        self._by_key.setdefault(key_id, set()).add(digest)

    def _drop(self, digest: bytes, key_id: str) -> None:
        self._entries.pop(digest, None)
        digests = self._by_key.get(key_id)
        if digests is not None:
            digests.discard(digest)
            if not digests:
                del self._by_key[key_id]

    def invalidate(self, key_id: str) -> None:
        self.generation += 1
        if key_id == "*":
            self._entries.clear()
            self._by_key.clear()
            return
        for digest in self._by_key.pop(key_id, set()):
            self._entries.pop(digest, None)


class FailureThrottle:
    """Counts failed attempts per client IP and per key id in fixed windows (in-process).

    Checked before any store lookup or hash work, so a flood of wrong secrets for a real key id, or
    of random keys from one address, cannot keep the verifier threads busy (case A4).
    """

    def __init__(
        self, *, per_ip: int, per_key: int, window: float, max_entries: int = 100_000
    ) -> None:
        self.per_ip = per_ip
        self.per_key = per_key
        self.window = window
        self.max_entries = max_entries
        self._counts: dict[str, tuple[float, int]] = {}

    def __repr__(self) -> str:
        return (
            f"FailureThrottle(per_ip={self.per_ip}, per_key={self.per_key}, window={self.window})"
        )

    def _over(self, name: str, limit: int, now: float) -> float | None:
        found = self._counts.get(name)
        if found is None or limit <= 0:
            return None
        start, count = found
        if now >= start + self.window:
            del self._counts[name]
            return None
        return start + self.window - now if count >= limit else None

    def blocked(self, client_ip: str | None, key_id: str | None, now: float) -> float | None:
        """Return seconds to wait when the IP or key id is over its limit, else None."""
        waits = []
        if client_ip is not None:
            waits.append(self._over("i" + client_ip, self.per_ip, now))
        if key_id is not None:
            waits.append(self._over("k" + key_id, self.per_key, now))
        found = [w for w in waits if w is not None]
        return max(found) if found else None

    def refund(self, client_ip: str | None, key_id: str | None) -> None:
        """Take back one attempt counted in advance that turned out to succeed."""
        for name in (
            "i" + client_ip if client_ip is not None else None,
            "k" + key_id if key_id is not None else None,
        ):
            found = self._counts.get(name) if name is not None else None
            if name is not None and found is not None and found[1] > 0:
                self._counts[name] = (found[0], found[1] - 1)

    def record(self, client_ip: str | None, key_id: str | None, now: float) -> None:
        """Count one failed attempt."""
        for name in (
            "i" + client_ip if client_ip is not None else None,
            "k" + key_id if key_id is not None else None,
        ):
            if name is None:
                continue
            start, count = self._counts.get(name, (now, 0))
            if now >= start + self.window:
                start, count = now, 0
            self._counts.pop(name, None)
            while len(self._counts) >= self.max_entries:
                del self._counts[next(iter(self._counts))]
            self._counts[name] = (start, count + 1)
