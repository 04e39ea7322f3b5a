"""Where the token verifier finds keys: :class:`KeySource`, :class:`LocalKeys` for our own.

Also the two checks that tie a key to an algorithm: the JWS registry that holds exactly the
allowlist, and :func:`key_fits` (an HMAC token never meets a public key as its secret).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import ECKey, Key, KeySet, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.oauth.jwks_remote import keys_from_jwks

__all__ = ["JWSAllowlist", "KeySource", "KeysLike", "LocalKeys", "PublishesJWKS", "key_fits"]

_MIN_RSA_BITS = 2048

logger = logging.getLogger("extapi_kit.oauth")


class KeySource(Protocol):
    """Where the verifier finds a verification key by ``kid``.

    ``version`` changes whenever the set of keys changes, so cached tokens are re-checked.
    """

    version: int

    async def find(self, kid: str) -> Key | None:
        """Return the key for ``kid`` or None."""
        ...


KeysLike = Mapping[str, Any] | KeySet | Sequence[Key]


class PublishesJWKS(Protocol):
    """Anything with an async ``jwks()`` returning its public JWKS (e.g. ``SigningKeys``)."""

    def jwks(self) -> Awaitable[Mapping[str, Any]]:
        """Return the public JWKS document."""
        ...


class LocalKeys:
    """Our own public keys: a JWKS document, a joserfc ``KeySet``, or a callable returning one.

    With a callable (e.g. a signing-key store's current JWKS), an unknown ``kid`` calls it again
    at most once per ``reload_interval`` seconds, so a rotated-in key is found without a restart.

    A callable that fails with a ``StoreError`` makes the lookup fail the same way (503); any
    other failure (a broken document) keeps the keys already loaded.

    Args:
        keys: the keys, or a zero-argument callable (sync or async) returning them.
        reload_interval: seconds between reloads on an unknown ``kid``.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        keys: KeysLike | Callable[[], KeysLike | Awaitable[KeysLike]],
        *,
        reload_interval: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._provider = keys if callable(keys) else None
        self._keys: dict[str, Key] = {} if callable(keys) else _index(keys)
        self._loaded_at: float | None = None
        self._reloading: asyncio.Future[None] | None = None
        self.reload_interval = reload_interval
        self._clock = clock
        self.version = 0

    def __repr__(self) -> str:
        return f"LocalKeys(kids={sorted(self._keys)})"

    async def find(self, kid: str) -> Key | None:
        """Return the key for ``kid``, reloading from the callable when unknown.

        Args:
            kid: the token's ``kid``.
        """
        key = self._keys.get(kid)
        if key is not None or self._provider is None:
            return key
        now = self._clock()
        # A reload in flight is joined, not skipped: concurrent first tokens must all see it.
        if self._reloading is None and (
            self._loaded_at is not None and now - self._loaded_at < self.reload_interval
        ):
            return None
        await self.reload()
        return self._keys.get(kid)

    async def reload(self) -> None:
        """Read the keys again from the callable (a no-op for a fixed set); single flight."""
        if self._provider is None:
            return
        if self._reloading is not None:
            await asyncio.shield(self._reloading)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reloading = done
        try:
            try:
                found = self._provider()
                if inspect.isawaitable(found):
                    found = await found
                keys = _index(found)
            except StoreError:
                raise  # the key store is down: the middleware answers 503, and retries next time
            except Exception as exc:  # a broken document must not turn into 500s: keep the set
                logger.warning("reloading our public keys failed: %s", type(exc).__name__)
                self._loaded_at = self._clock()
                return
            self._loaded_at = self._clock()
            if _public(keys) != _public(self._keys):
                self._keys = keys
                self.version += 1
        finally:
            self._reloading = None
            done.set_result(None)


def _public(keys: Mapping[str, Key]) -> dict[str, Any]:
    return {kid: key.as_dict(private=False) for kid, key in keys.items()}


def _index(keys: Any) -> dict[str, Key]:
    if isinstance(keys, KeySet):
        keys = keys.keys
    if isinstance(keys, Mapping):
        try:
            return keys_from_jwks(dict(keys))
        except ValueError as exc:
            raise ConfigurationError(f"not a JWKS document: {exc}") from None
    out: dict[str, Key] = {}
    for key in keys:
        kid = key.kid
        if kid and not isinstance(key, OctKey):
            out[kid] = key
    return out


class JWSAllowlist(JWSRegistry):
    """A joserfc registry that allows exactly its ``algorithms`` (and never ``none``)."""

    # joserfc warns on "EdDSA" (RFC 9864 deprecates the polymorphic name in favour of "Ed25519").
    # RFC 9068 issuers still send "EdDSA", and we pin it to Ed25519 keys in _check_key, so the
    # name is not ambiguous here; the allowlist is this registry's own.
    def get_alg(self, name: str) -> Any:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"algorithm {name!r} is not allowed")
        return self.algorithms[name]


def key_fits(key: Key, alg: str) -> bool:
    """Return whether ``key`` is the kind of key ``alg`` needs.

    Args:
        key: the key found by ``kid``.
        alg: the token's algorithm.
    """
    if alg in ("EdDSA", "Ed25519"):
        return isinstance(key, OKPKey) and key.curve_name == "Ed25519"
    if alg == "ES256":
        return isinstance(key, ECKey) and key.curve_name == "P-256"
    if alg == "ES384":
        return isinstance(key, ECKey) and key.curve_name == "P-384"
    if alg in ("RS256", "PS256"):
        return isinstance(key, RSAKey) and key.raw_value.key_size >= _MIN_RSA_BITS
    return False
