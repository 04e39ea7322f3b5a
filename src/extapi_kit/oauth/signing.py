"""Token signing keys: several keys by ``kid``, each ``next``, ``current`` or ``retired``.

The life of a key::

    created as next (published in the JWKS, not used)  --rotate()-->  current (signs tokens)
        --rotate()-->  retired (still published, so tokens it signed verify until they expire)
        --retain has passed-->  dropped

Publishing the next key one rotation ahead means a verifier that caches our JWKS already holds
the key the moment it starts signing (no "unknown kid" window after a rotation). A retired key
stays published for ``retain`` (default: the longest token lifetime we allow, plus a margin), so
every token it signed can still be verified until it expires.

Algorithms: ``EdDSA`` (Ed25519, RFC 8037; the default) or ``ES256`` (P-256, RFC 7518 §3.4). Never
``none`` and never a shared-secret HMAC: a verifier only ever needs our public keys. JOSE is done
by joserfc.

Private keys are sealed before they reach a store: AES-256-GCM with a key derived (HKDF-SHA256,
a random salt per key) from the operator's ``secret``, the ``kid`` bound as associated data.
Without a secret only ``memory://`` and an operator-managed ``file://`` JWKS are accepted. A
private key never appears in a ``repr``, a log line, an error or an admin answer: only
``SigningKey.public_jwk()`` leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeySet, OKPKey
from joserfc.jws import JWSRegistry

from extapi_kit._types import Clock
from extapi_kit._units import parse_duration
from extapi_kit.exceptions import ConfigurationError, ConflictError, StoreError
from extapi_kit.oauth.signing_store import SigningKeyStore, signing_store_from_url

__all__ = [
    "ALGORITHMS",
    "DEFAULT_RETAIN",
    "SigningKey",
    "SigningKeys",
    "jws_registry",
]

logger = logging.getLogger("extapi_kit.oauth")

#: Signing algorithms we issue with (RFC 8037 EdDSA over Ed25519; RFC 7518 ES256 over P-256).
ALGORITHMS: Final = ("EdDSA", "ES256")
#: How long a retired key stays published: the longest token lifetime the issuer allows (24 h)
#: plus a margin for clock skew and caches.
DEFAULT_RETAIN: Final = 24 * 3600.0 + 600.0
STATES: Final = ("next", "current", "retired")
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_OUR_MEMBERS: Final = ("status", "created_at", "activated_at", "retired_at", "sealed")
_INFO: Final = b"extapi-kit oauth signing key v1"
_MIN_SECRET: Final = 32


class _Registry(JWSRegistry):
    # joserfc warns on "EdDSA" because RFC 9864 prefers the fully-specified "Ed25519"; verifiers
    # in the field (PyJWT, identity providers, RFC 8037 test vectors) still expect "EdDSA", and
    # the key is always Ed25519 here, so the name is unambiguous. Other algorithms keep the
    # library's checks (and its warnings).
    def get_alg(self, name: str) -> Any:
        if name == "EdDSA" and name in self.algorithms:
            if self.allowed is not None and name not in self.allowed:
                raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
            return self.algorithms[name]
        return super().get_alg(name)


@functools.lru_cache(maxsize=8)
def _registry(algorithms: tuple[str, ...]) -> JWSRegistry:
    return _Registry(algorithms=list(algorithms))


def jws_registry(algorithms: Sequence[str] = ALGORITHMS) -> JWSRegistry:
    """Return a joserfc JWS registry allowing only ``algorithms`` (default EdDSA and ES256).

    Args:
        algorithms: the allowed ``alg`` values.
    """
    return _registry(tuple(algorithms))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One signing key. Its private half is never part of ``repr`` or ``info()``.

    Args:
        kid: the key id (the RFC 7638 thumbprint of the public key).
        alg: ``EdDSA`` or ``ES256``.
        state: ``next``, ``current`` or ``retired``.
        created_at: epoch seconds.
        activated_at: when it became current, if it did.
        retired_at: when it was retired, if it was.
    """

    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None
    _private: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def public_jwk(self) -> dict[str, Any]:
        """Return the public JWK (RFC 7517): ``kty``, ``crv``, ``x`` (``y``), ``kid``, ``alg``."""
        jwk = {k: v for k, v in self._private.items() if k not in _PRIVATE_MEMBERS}
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def info(self) -> dict[str, Any]:
        """Return what operators see (CLI, admin API): public parts and state only."""
        return {
            "kid": self.kid,
            "alg": self.alg,
            "state": self.state,
            "created_at": self.created_at,
            "activated_at": self.activated_at,
            "retired_at": self.retired_at,
            "public_jwk": self.public_jwk(),
        }


def _new_key(alg: str, now: float) -> SigningKey:
    if alg == "EdDSA":
        key: OKPKey | ECKey = OKPKey.generate_key("Ed25519", private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        raise ConfigurationError(f"signing algorithm must be one of {', '.join(ALGORITHMS)}")
    jwk = dict(key.as_dict(private=True))
    jwk.pop("kid", None)
    return SigningKey(kid=key.thumbprint(), alg=alg, state="next", created_at=now, _private=jwk)


class _Sealer:
    """AES-256-GCM under a key derived from the operator secret (HKDF-SHA256, salt per key)."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) < _MIN_SECRET:
            raise ConfigurationError(
                f"the signing key secret must be at least {_MIN_SECRET} bytes of random data "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self._secret = raw

    def __repr__(self) -> str:
        return "_Sealer(***)"

    def _aead(self, salt: bytes) -> AESGCM:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
        return AESGCM(hkdf.derive(self._secret))

    def seal(self, kid: str, jwk: Mapping[str, Any]) -> dict[str, str]:
        salt, nonce = os.urandom(16), os.urandom(12)
        ct = self._aead(salt).encrypt(nonce, json.dumps(dict(jwk)).encode(), kid.encode())
        return {"alg": "A256GCM+HKDF-SHA256", "salt": _b64(salt), "iv": _b64(nonce), "ct": _b64(ct)}

    def open(self, kid: str, sealed: Mapping[str, Any]) -> dict[str, Any]:
        try:
            aead = self._aead(_unb64(sealed["salt"]))
            plain = aead.decrypt(_unb64(sealed["iv"]), _unb64(sealed["ct"]), kid.encode())
        except (InvalidTag, KeyError, ValueError, TypeError):
            raise ConfigurationError(
                f"cannot decrypt signing key {kid}: wrong secret or damaged key set"
            ) from None
        data: dict[str, Any] = json.loads(plain)
        return data


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKeys:
    """The issuer's signing key set, kept in a :class:`~extapi_kit.oauth.SigningKeyStore`.

    Reads are cached for ``refresh_interval`` seconds, so a rotation made by another process
    (the CLI, the admin API of another worker) is picked up within that time; until then this
    process signs with the key that was current, which stays published as retired.

    Args:
        store: a store URL (``memory://``, ``sqlite:///keys.db``, ``redis://...``,
            ``postgresql://...``, ``file:///etc/extapi/signing.jwks``) or a store object.
        secret: operator secret (>= 32 bytes) sealing private keys at rest; required for every
            store but ``memory://`` and ``file://``.
        algorithm: algorithm of keys this set creates (``"EdDSA"`` or ``"ES256"``).
        retain: how long a retired key stays published (seconds or ``"25h"``); at least the
            longest token lifetime.
        refresh_interval: seconds between reloads of the stored set.
        clock: epoch seconds.
    """

    def __init__(
        self,
        store: SigningKeyStore | str = "memory://",
        *,
        secret: str | bytes | None = None,
        algorithm: str = "EdDSA",
        retain: float | str = DEFAULT_RETAIN,
        refresh_interval: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(f"signing algorithm must be one of {', '.join(ALGORITHMS)}")
        self._owns_store = isinstance(store, str)
        self.store: SigningKeyStore = (
            signing_store_from_url(store) if isinstance(store, str) else store
        )
        memory = type(self.store).__name__ == "MemorySigningKeyStore"
        if secret is None and not (memory or getattr(self.store, "holds_plaintext", False)):
            raise ConfigurationError(
                f"signing keys in {self.store!r} need secret= (private keys are sealed at rest); "
                "or keep them in a file:// JWKS you manage"
            )
        self._sealer = _Sealer(secret) if secret is not None else None
        self.algorithm = algorithm
        self.retain = parse_duration(retain)
        if refresh_interval < 0:
            raise ConfigurationError("refresh_interval must be >= 0")
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._version = 0
        self._loaded_at: float | None = None
        self._jose: dict[str, OKPKey | ECKey] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SigningKeys(store={self.store!r}, algorithm={self.algorithm!r})"

    # -- document <-> keys -------------------------------------------------------------------

    def _decode(self, document: str | None) -> list[SigningKey]:
        if document is None:
            return []
        try:
            data = json.loads(document)
            entries = data["keys"]
        except (ValueError, KeyError, TypeError):
            raise StoreError("the stored signing key set is damaged") from None
        keys: list[SigningKey] = []
        have_current = any(isinstance(e, dict) and e.get("status") == "current" for e in entries)
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("alg") not in ALGORITHMS:
                continue  # RFC 7517 §5: skip what we do not understand
            kid = str(entry.get("kid") or "")
            sealed = entry.get("sealed")
            if sealed is not None:
                if self._sealer is None:
                    raise ConfigurationError("the stored signing keys are sealed: give secret=")
                private = self._sealer.open(kid, sealed)
            else:
                private = {k: v for k, v in entry.items() if k not in _OUR_MEMBERS}
                for extra in ("kid", "alg", "use", "key_ops"):
                    private.pop(extra, None)
            state = entry.get("status")
            if state not in STATES:
                state = "next" if have_current else "current"
                have_current = True
            if not kid:
                kid = self._jose_key(entry["alg"], private).thumbprint()
            keys.append(
                SigningKey(
                    kid=kid,
                    alg=entry["alg"],
                    state=state,
                    created_at=float(entry.get("created_at") or 0.0),
                    activated_at=_opt_float(entry.get("activated_at")),
                    retired_at=_opt_float(entry.get("retired_at")),
                    _private=private,
                )
            )
        return keys

    def _encode(self, keys: Sequence[SigningKey]) -> str:
        entries = []
        for key in keys:
            meta: dict[str, Any] = {
                "kid": key.kid,
                "alg": key.alg,
                "use": "sig",
                "status": key.state,
                "created_at": key.created_at,
                "activated_at": key.activated_at,
                "retired_at": key.retired_at,
            }
            if self._sealer is not None:
                meta["sealed"] = self._sealer.seal(key.kid, key._private)
            else:
                meta.update(key._private)
            entries.append(meta)
        return json.dumps({"keys": entries}, separators=(",", ":"), sort_keys=True)

    @staticmethod
    def _jose_key(alg: str, private: Mapping[str, Any]) -> OKPKey | ECKey:
        if alg == "EdDSA":
            return OKPKey.import_key(dict(private))
        return ECKey.import_key(dict(private))

    # -- loading -----------------------------------------------------------------------------

    async def _load(self) -> None:
        document, version = await self.store.load()
        keys = self._decode(document)
        self._keys, self._version = keys, version
        self._loaded_at = self._clock()
        self._jose = {k.kid: self._jose_key(k.alg, k._private) for k in keys}

    async def _fresh(self, force: bool = False) -> list[SigningKey]:
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at >= self.refresh_interval
        if force or stale:
            async with self._lock:
                if (
                    force
                    or self._loaded_at is None
                    or now - self._loaded_at >= self.refresh_interval
                ):
                    await self._load()
        return self._keys

    async def _commit(self, keys: list[SigningKey]) -> bool:
        if not await self.store.save(self._encode(keys), expected=self._version):
            return False
        self._keys, self._version = keys, self._version + 1
        self._loaded_at = self._clock()
        self._jose = {k.kid: self._jose_key(k.alg, k._private) for k in keys}
        return True

    def _pruned(self, keys: Sequence[SigningKey], now: float) -> list[SigningKey]:
        return [
            k for k in keys if k.state != "retired" or (k.retired_at or 0.0) + self.retain > now
        ]

    async def ensure(self) -> list[SigningKey]:
        """Make sure a current and a next key exist (creating them on first use); return all.

        Safe to call from several processes at once: one creates the keys, the others load them.
        """
        for _ in range(5):
            keys = await self._fresh(force=not self._keys)
            states = {k.state for k in keys}
            if {"current", "next"} <= states:
                return keys
            now = self._clock()
            updated = list(keys)
            if "current" not in states:
                promoted = next((k for k in updated if k.state == "next"), None)
                if promoted is None:
                    promoted = _new_key(self.algorithm, now)
                    updated.append(promoted)
                updated[updated.index(promoted)] = replace(
                    promoted, state="current", activated_at=now
                )
            if not any(k.state == "next" for k in updated):
                updated.append(_new_key(self.algorithm, now))
            if await self._commit(updated):
                logger.info("signing keys created (%s)", self.algorithm)
                return self._keys
            await self._fresh(force=True)
        raise StoreError("could not create signing keys: the key set keeps changing")

    async def keys(self, *, refresh: bool = False, create: bool = True) -> list[SigningKey]:
        """Return every key (next, current and retired still within ``retain``).

        Args:
            refresh: reload from the store now.
            create: create the first keys when there are none (False: an empty list).
        """
        if self._keys:
            await self._fresh(force=refresh)
        elif create:
            await self.ensure()
        else:
            await self._fresh(force=True)
        return self._pruned(self._keys, self._clock())

    async def rotate(self, *, algorithm: str | None = None) -> list[SigningKey]:
        """Promote next to current, retire the current key, create a new next key.

        Args:
            algorithm: algorithm of the new next key (default: the set's).

        Raises:
            ConflictError: another process changed the set meanwhile (nothing was changed).
        """
        alg = algorithm or self.algorithm
        if alg not in ALGORITHMS:
            raise ConfigurationError(f"signing algorithm must be one of {', '.join(ALGORITHMS)}")
        await self.ensure()
        await self._fresh(force=True)
        now = self._clock()
        updated: list[SigningKey] = []
        for key in self._pruned(self._keys, now):
            if key.state == "current":
                key = replace(key, state="retired", retired_at=now)
            elif key.state == "next":
                key = replace(key, state="current", activated_at=now)
            updated.append(key)
        updated.append(_new_key(alg, now))
        if not await self._commit(updated):
            raise ConflictError("the signing key set changed while rotating; try again")
        current = next(k for k in updated if k.state == "current")
        logger.info("signing keys rotated: current kid %s", current.kid)
        return self._pruned(self._keys, now)

    async def current(self) -> SigningKey:
        """Return the key tokens are signed with now."""
        keys = await self.keys()
        current = [k for k in keys if k.state == "current"]
        # Two processes racing on an empty store each commit at most once (compare-and-set), so
        # there is one current key; the newest wins should an operator's file name two.
        return max(current, key=lambda k: (k.activated_at or 0.0, k.kid))

    async def jwks(self) -> dict[str, Any]:
        """Return the public JWKS (RFC 7517 §5): current, next and still-valid retired keys."""
        return {"keys": [k.public_jwk() for k in await self.keys()]}

    async def verification_keys(self) -> KeySet:
        """Return the published keys as a joserfc ``KeySet`` of public keys."""
        return KeySet([self._jose_key(k.alg, k.public_jwk()) for k in await self.keys()])

    async def sign(self, claims: Mapping[str, Any], *, typ: str = "at+jwt") -> str:
        """Sign ``claims`` as a compact JWS with the current key.

        The protected header is ``{"alg", "typ", "kid"}`` only (no ``jku``/``x5u``/``jwk``: a
        verifier must find our key by ``kid`` in a JWKS it trusts).

        Args:
            claims: the JWT claims.
            typ: the ``typ`` header (RFC 9068 §2.1: ``at+jwt``).
        """
        key = await self.current()
        header = {"alg": key.alg, "typ": typ, "kid": key.kid}
        return jwt.encode(
            header,
            dict(claims),
            self._jose[key.kid],
            algorithms=[key.alg],
            registry=_registry((key.alg,)),
        )

    async def aclose(self) -> None:
        """Close the store if this object created it from a URL."""
        if self._owns_store:
            await self.store.aclose()


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
