"""In-process state of the verify path: the positive cache and the failed-attempt throttle."""

from __future__ import annotations

import hashlib
import ipaddress
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
    """Failed attempts per source, per (source, key id) and per key id, in fixed windows.

    A *source* is a client IP; IPv6 addresses count per /64 (one subscriber's prefix), and
    requests without a known address share one source. Checked before any store lookup or hash
    work (cases A4, A16):

    - a source past ``per_ip`` failures, or past ``per_key`` failures for one key id, is refused;
    - a key id whose failures from all sources reached ``key_budget`` has its hash work rationed:
      only a source with no failure in the window (and no attempt in flight for that key id) is
      still verified. So a flood cannot lock the holder out, and costs at most ``per_key`` hashes
      per source plus one per fresh source per window.

    Attempts in flight count toward the limits (so a concurrent burst cannot slip past them) and
    become failures only when the key was refused; a store error is not a failure (A15).
    """

    def __init__(
        self,
        *,
        per_ip: int,
        per_key: int,
        window: float,
        key_budget: int = 20,
        max_entries: int = 100_000,
    ) -> None:
        self.per_ip = per_ip
        self.per_key = per_key
        self.key_budget = key_budget
        self.window = window
        self.max_entries = max_entries
        self._counts: dict[str, tuple[float, int]] = {}
        self._pending: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"FailureThrottle(per_ip={self.per_ip}, per_key={self.per_key}, "
            f"key_budget={self.key_budget}, window={self.window})"
        )

    @staticmethod
    def _names(client_ip: str | None, key_id: str | None) -> tuple[str, str | None, str | None]:
        source = _source(client_ip)
        if key_id is None:
            return "i" + source, None, None
        return "i" + source, f"p{source} {key_id}", "k" + key_id

    def _count(self, name: str, now: float) -> tuple[int, float]:
        """Return (failures in the current window, seconds until it ends)."""
        found = self._counts.get(name)
        if found is None:
            return 0, 0.0
        start, count = found
        if now >= start + self.window:
            del self._counts[name]
            return 0, 0.0
        return count, start + self.window - now

    def _over(self, name: str, limit: int, now: float) -> float | None:
        count, left = self._count(name, now)
        pending = self._pending.get(name, 0)
        if limit <= 0 or count + pending < limit:
            return None
        return left if count else 1.0

    def blocked(self, client_ip: str | None, key_id: str | None, now: float) -> float | None:
        """Return seconds the source should wait before trying this key id again, or None."""
        ip_name, pair_name, key_name = self._names(client_ip, key_id)
        waits = [self._over(ip_name, self.per_ip, now)]
        if pair_name is not None and key_name is not None:
            waits.append(self._over(pair_name, self.per_key, now))
            if self._over(key_name, self.key_budget, now) is not None:
                # Budget spent: only a clean source is still verified (A16).
                ip_failures, left = self._count(ip_name, now)
                if ip_failures:
                    waits.append(left)
                elif self._pending.get(pair_name, 0):
                    waits.append(1.0)
        found = [w for w in waits if w is not None]
        return max(found) if found else None

    def begin(self, client_ip: str | None, key_id: str | None) -> None:
        """Note an attempt in flight (it counts toward the limits until :meth:`end`)."""
        for name in self._names(client_ip, key_id):
            if name is not None:
                self._pending[name] = self._pending.get(name, 0) + 1

    def end(
        self, client_ip: str | None, key_id: str | None, now: float, *, failed: bool, hashed: bool
    ) -> None:
        """Close an attempt opened by :meth:`begin`; count it if the key was refused.

        A failure always counts for the source; it counts for the key id (and for the source's
        attempts on it) only when a hash was verified, the work those limits ration.
        """
        names = self._names(client_ip, key_id)
        for name in names:
            if name is None:
                continue
            left = self._pending.get(name, 0) - 1
            if left > 0:
                self._pending[name] = left
            else:
                self._pending.pop(name, None)
        if failed:
            self._add(names[0], now)
            if hashed:
                for name in names[1:]:
                    if name is not None:
                        self._add(name, now)

    def record(self, client_ip: str | None, key_id: str | None, now: float) -> None:
        """Count one failed attempt (for the source, and for the key id when given)."""
        for name in self._names(client_ip, key_id):
            if name is not None:
                self._add(name, now)

    def _add(self, name: str, now: float) -> None:
        start, count = self._counts.get(name, (now, 0))
        if now >= start + self.window:
            start, count = now, 0
        self._counts.pop(name, None)
        while len(self._counts) >= self.max_entries:
            del self._counts[next(iter(self._counts))]
        self._counts[name] = (start, count + 1)


def _source(client_ip: str | None) -> str:
    if client_ip is None:
        return "-"
    if ":" not in client_ip:
        return client_ip
    try:
        addr = ipaddress.IPv6Address(client_ip)
    except ValueError:
        return client_ip
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    # One IPv6 subscriber usually holds a whole /64: counting per address would let it rotate
    # through 2**64 "fresh" sources.
    return str(ipaddress.IPv6Network((addr, 64), strict=False).network_address)
