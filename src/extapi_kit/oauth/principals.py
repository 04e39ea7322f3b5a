"""From a verified access token to the :class:`~extapi_kit.context.Principal` of the request.

A token of our own issuer stands for the API key named by its ``sub``: the principal is built
from that key's *current* record (revocation, expiry, rotation grace, per-key networks, limits and
quota all apply), with the scopes both the key and the token hold. Records are cached like the
key verify path caches keys (``cache_ttl``, bounded by the key's own expiry), and the cache
listens to the key store's change stream (``KeyStore.watch``): revoking a key drops its record
in every process within the store's revocation window (< 1 s on Redis, case A6), so its tokens
are refused as fast as the key itself (case O15).

A token of an external identity provider stands for the principal its claims map to
(:class:`~extapi_kit.oauth.claims.ClaimsMapping`); there is no record to consult.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.context import Principal
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth.claims import narrow_scopes
from extapi_kit.oauth.verify import InvalidTokenError, TokenVerifier

__all__ = ["TokenAuthenticator"]

logger = logging.getLogger("extapi_kit.oauth")


class _Record:
    __slots__ = ("principal", "record", "until")

    def __init__(self, record: KeyRecord, until: float) -> None:
        self.record = record
        self.principal = record.to_principal()
        self.until = until


class TokenAuthenticator:
    """Authenticate a bearer token to a principal (used by ``ApiKeyMiddleware``).

    Args:
        verifier: the token verifier.
        service: the key service whose keys our tokens stand for.
        cache_ttl: seconds a key record is trusted without a store lookup (revocation reaches
            the cache sooner through the store's change stream where it has one).
        cache_size: key records kept.
        clock: epoch seconds.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        service: KeyService,
        *,
        cache_ttl: float = 10.0,
        cache_size: int = 10_000,
        clock: Clock = time.time,
    ) -> None:
        self.verifier = verifier
        self.service = service
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._generation = 0
        self._watching = False

    def __repr__(self) -> str:
        return f"TokenAuthenticator(verifier={self.verifier!r}, records={len(self._records)})"

    async def authenticate(self, token: str) -> Principal:
        """Return the principal a token stands for.

        Args:
            token: the presented bearer token.

        Raises:
            InvalidTokenError: the token, or the key it stands for, is not valid (401).
            StoreError: the key store failed and the key's record was not cached (503).
        """
        verified = await self.verifier.verify(token)
        if verified.principal is not None:  # an external provider's token: claims decide
            return verified.principal
        now = self._clock()
        entry = self._records.get(verified.subject)
        if entry is None or now >= entry.until:
            entry = await self._load(verified.subject, now)
        if not entry.record.is_valid(now):
            raise InvalidTokenError(entry.record.status(now))
        self.service.note_used(entry.record.id, now)  # a token's use is its key's use
        memo = verified.memo
        if memo is not None and memo[0] is entry:
            principal: Principal = memo[1]
            return principal
        principal = dataclasses.replace(
            entry.principal,
            scopes=narrow_scopes(entry.principal.scopes, verified.scopes),
            auth="token",
            token_id=verified.token_id,
        )
        verified.memo = (entry, principal)
        return principal

    async def _load(self, key_id: str, now: float) -> _Record:
        await self._ensure_watch()
        generation = self._generation
        record = await self.service.store.get(key_id)
        if record is None:
            raise InvalidTokenError("unknown-key")
        until = now + self.cache_ttl
        valid_until = record.valid_until()
        if valid_until is not None:
            until = min(until, valid_until)
        entry = _Record(record, until)
        # A revocation announced while the record was read must not be cached over.
        if self.cache_ttl > 0 and generation == self._generation:
            while len(self._records) >= self.cache_size:
                del self._records[next(iter(self._records))]
            self._records[key_id] = entry
        return entry

    def invalidate(self, key_id: str) -> None:
        """Drop a key's cached record (``"*"``: all); called by the store's change stream.

        Args:
            key_id: the changed key's id.
        """
        self._generation += 1
        if key_id == "*":
            self._records.clear()
        else:
            self._records.pop(key_id, None)

    async def _ensure_watch(self) -> None:
        if self._watching:
            return
        self._watching = True
        watch: Any = getattr(self.service.store, "watch", None)
        if watch is None:
            return
        try:
            await watch(self.invalidate)
        except Exception as exc:
            logger.warning("could not watch key changes for tokens: %s", type(exc).__name__)

    async def aclose(self) -> None:
        """Close what the verifier owns (JWKS fetchers)."""
        await self.verifier.aclose()
