"""Hashers for API key secrets: argon2id (default) and HMAC-SHA256 with a server pepper.

A stored hash always names its algorithm and parameters (``$argon2id$v=19$m=19456,t=2,p=1$...`` or
``hmac-sha256$<pepper_id>$<hex>``), so a change of parameters or pepper is detected by
``needs_rehash()`` and the key is rehashed on its next successful verify.

Cost (2-vCPU VM): argon2id at the OWASP minimum (m=19 MiB, t=2, p=1) takes tens of milliseconds per
verify; HMAC-SHA256 a few microseconds. That is why :class:`HashVerifier` always runs verification
in a worker thread under a capacity limiter (the event loop never runs argon2, case A5), and why
:class:`~extapi_kit.keys.service.KeyService` caches positive results. Keys carry 256 random bits,
so a fast keyed hash is also a sound choice for users who prefer it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import anyio
import anyio.to_thread
from argon2 import Parameters, PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "OWASP_ARGON2_PARAMETERS",
    "Argon2Hasher",
    "HashVerifier",
    "Hasher",
    "HmacHasher",
]

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
OWASP_ARGON2_PARAMETERS = Parameters(
    type=Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
)
_PEPPER_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_HMAC_NAME = "hmac-sha256"


@runtime_checkable
class Hasher(Protocol):
    """What a secret hasher provides. Implementations must be thread-safe (verify runs in threads).

    Args:
        name: algorithm name recorded at the start of every hash it produces.
    """

    name: str

    def hash(self, secret: str) -> str:
        """Return the stored form of ``secret``."""

    def verify(self, stored: str, secret: str) -> bool:
        """Return whether ``secret`` matches ``stored`` (constant time)."""

    def handles(self, stored: str) -> bool:
        """Return whether this hasher can verify ``stored``."""

    def needs_rehash(self, stored: str) -> bool:
        """Return whether ``stored`` was made with other parameters than this hasher's."""


class Argon2Hasher:
    """argon2id through argon2-cffi's :class:`~argon2.PasswordHasher`.

    Args:
        parameters: an :class:`argon2.Parameters` (e.g. ``argon2.profiles.RFC_9106_LOW_MEMORY``);
            default :data:`OWASP_ARGON2_PARAMETERS` (m=19 MiB, t=2, p=1).
    """

    name = "argon2id"

    def __init__(self, parameters: Parameters | None = None) -> None:
        self.parameters = parameters or OWASP_ARGON2_PARAMETERS
        try:
            self._ph = PasswordHasher.from_parameters(self.parameters)
        except Exception as exc:
            raise ConfigurationError(f"invalid argon2 parameters: {exc}") from exc

    def __repr__(self) -> str:
        p = self.parameters
        return f"Argon2Hasher(m={p.memory_cost}, t={p.time_cost}, p={p.parallelism})"

    def hash(self, secret: str) -> str:
        """Return an argon2 hash string (algorithm and parameters included).

        Args:
            secret: the text to hash.
        """
        return self._ph.hash(secret)

    def verify(self, stored: str, secret: str) -> bool:
        """Return whether ``secret`` matches ``stored`` (argon2's own constant-time compare).

        Args:
            stored: an argon2 hash string, with any parameters.
            secret: the presented text.
        """
        try:
            return bool(self._ph.verify(stored, secret))
        except (VerificationError, InvalidHashError):
            return False

    def handles(self, stored: str) -> bool:
        """Return whether ``stored`` is an argon2 hash.

        Args:
            stored: a stored hash.
        """
        return stored.startswith("$argon2")

    def needs_rehash(self, stored: str) -> bool:
        """Return whether ``stored`` used other parameters than this hasher.

        Args:
            stored: an argon2 hash string.
        """
        try:
            return bool(self._ph.check_needs_rehash(stored))
        except (InvalidHashError, ValueError):
            return True


class HmacHasher:
    """HMAC-SHA256 keyed with a server pepper; stored as ``hmac-sha256$<pepper_id>$<hex>``.

    Args:
        pepper: the current secret pepper (at least 16 bytes); keep it out of the key store.
        pepper_id: a short name for it, recorded in every hash.
        old_peppers: earlier peppers by id, still accepted for verify (then rehashed).
    """

    name = _HMAC_NAME

    def __init__(
        self,
        pepper: bytes | str,
        *,
        pepper_id: str = "1",
        old_peppers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        peppers = {pepper_id: pepper, **(old_peppers or {})}
        self._peppers: dict[str, bytes] = {}
        for pid, value in peppers.items():
            if not _PEPPER_ID_RE.fullmatch(pid):
                raise ConfigurationError(f"invalid pepper id {pid!r}: use 1-32 of [A-Za-z0-9._-]")
            raw = value.encode() if isinstance(value, str) else bytes(value)
            if len(raw) < 16:
                raise ConfigurationError("an HMAC pepper must be at least 16 bytes")
            self._peppers[pid] = raw
        self.pepper_id = pepper_id

    def __repr__(self) -> str:
        return f"HmacHasher(pepper_id={self.pepper_id!r}, peppers={len(self._peppers)})"

    def _digest(self, pepper: bytes, secret: str) -> str:
        return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()

    def hash(self, secret: str) -> str:
        """Return ``hmac-sha256$<pepper_id>$<hex digest>``.

        Args:
            secret: the text to hash.
        """
        digest = self._digest(self._peppers[self.pepper_id], secret)
        return f"{_HMAC_NAME}${self.pepper_id}${digest}"

    def verify(self, stored: str, secret: str) -> bool:
        """Return whether ``secret`` matches ``stored``, via ``hmac.compare_digest`` (A12).

        Args:
            stored: an ``hmac-sha256$...`` string.
            secret: the presented text.
        """
        name, _, rest = stored.partition("$")
        pepper_id, _, digest = rest.partition("$")
        pepper = self._peppers.get(pepper_id)
        if name != _HMAC_NAME or pepper is None:
            return False
        return hmac.compare_digest(self._digest(pepper, secret), digest)

    def handles(self, stored: str) -> bool:
        """Return whether ``stored`` is an HMAC hash made with a pepper this hasher knows.

        Args:
            stored: a stored hash.
        """
        name, _, rest = stored.partition("$")
        return name == _HMAC_NAME and rest.partition("$")[0] in self._peppers

    def needs_rehash(self, stored: str) -> bool:
        """Return whether ``stored`` used another pepper than the current one.

        Args:
            stored: an ``hmac-sha256$...`` string.
        """
        return not stored.startswith(f"{_HMAC_NAME}${self.pepper_id}$")


class HashVerifier:
    """Hash and verify in worker threads, never on the event loop, at most N at a time.

    Args:
        hasher: the hasher for new hashes (and rehashes).
        extra: further hashers accepted for verify (e.g. an HMAC hasher during a migration).
        max_concurrency: worker threads allowed to hash at once (default: CPU count, 1-4).
    """

    def __init__(
        self,
        hasher: Hasher,
        *,
        extra: Sequence[Hasher] = (),
        max_concurrency: int | None = None,
    ) -> None:
        self.hasher = hasher
        self._hashers: tuple[Hasher, ...] = (hasher, *extra)
        tokens = max_concurrency or max(1, min(4, os.cpu_count() or 1))
        if tokens < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        self.limiter = anyio.CapacityLimiter(tokens)

    def __repr__(self) -> str:
        return f"HashVerifier({self.hasher!r}, threads={int(self.limiter.total_tokens)})"

    def _verify_sync(self, stored: str, secret: str) -> tuple[bool, str | None]:
        for h in self._hashers:
            if h.handles(stored):
                if not h.verify(stored, secret):
                    return False, None
                if h is not self.hasher or self.hasher.needs_rehash(stored):
                    return True, self.hasher.hash(secret)
                return True, None
        return False, None

    async def verify(self, stored: str, secret: str) -> tuple[bool, str | None]:
        """Verify in a worker thread; return ``(ok, new_hash_or_None)``.

        ``new_hash`` is set when the secret matched but the stored hash used other parameters or
        another algorithm than :attr:`hasher`.

        Args:
            stored: the stored hash.
            secret: the presented text.
        """
        return await anyio.to_thread.run_sync(
            self._verify_sync, stored, secret, limiter=self.limiter
        )

    async def hash(self, secret: str) -> str:
        """Hash in a worker thread.

        Args:
            secret: the text to hash.
        """
        return await anyio.to_thread.run_sync(self.hasher.hash, secret, limiter=self.limiter)
