"""Where token signing keys are kept: one small versioned document per key set.

A ``SigningKeyStore`` holds the key set as one JSON document (a JWKS, RFC 7517 §5, whose
entries carry our state members) and a version number. Every write is a compare-and-set on that
version, so two workers creating the first keys at once, or two operators rotating at once, never
interleave: one wins, the other reloads (or gets a :class:`~extapi_kit.exceptions.ConflictError`).

Built-ins by URL, like the key store: ``memory://`` (this process only), ``sqlite:///file.db``,
``redis://...`` and ``postgresql://...`` (modules ``signing_store_sql`` / ``signing_store_redis``),
and ``file:///etc/extapi/signing.jwks``: a JWKS file the operator manages (private keys in the
clear, so the file is created ``0600`` and the operator keeps it like a TLS key).

Stores never see a private key in the clear unless the operator chose the file store or gave no
secret to an in-memory set: :class:`~extapi_kit.oauth.signing.SigningKeys` seals each private key
(AES-256-GCM, key derived from the operator secret) before the document reaches a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from extapi_kit._files import FILE_MODE, make_private_dirs
from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.stores import register_store, store_from_url

__all__ = [
    "FileSigningKeyStore",
    "MemorySigningKeyStore",
    "SigningKeyStore",
    "signing_store_from_url",
]

KIND = "signing_keys"

for _scheme, _target in {
    "memory": "extapi_kit.oauth.signing_store:MemorySigningKeyStore",
    "file": "extapi_kit.oauth.signing_store:FileSigningKeyStore",
    "sqlite": "extapi_kit.oauth.signing_store_sql:SQLiteSigningKeyStore",
    "postgresql": "extapi_kit.oauth.signing_store_sql:PostgresSigningKeyStore",
    "postgres": "extapi_kit.oauth.signing_store_sql:PostgresSigningKeyStore",
    "redis": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
    "rediss": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
    "redis+cluster": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
    "rediss+cluster": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
    "redis+sentinel": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
    "rediss+sentinel": "extapi_kit.oauth.signing_store_redis:RedisSigningKeyStore",
}.items():
    register_store(KIND, _scheme, _target)


@runtime_checkable
class SigningKeyStore(Protocol):
    """Persistence of one signing key set: a JSON document and its version.

    Implementations never parse or log the document: it may hold private keys.
    """

    #: True when the document is kept where only the operator can read it as a file they manage
    #: (private keys may then be stored in the clear).
    holds_plaintext: bool

    async def load(self) -> tuple[str | None, int]:
        """Return ``(document, version)``; ``(None, 0)`` when nothing was saved yet."""
        ...

    async def save(self, document: str, *, expected: int) -> bool:
        """Store ``document`` as version ``expected + 1`` if the stored version is ``expected``.

        Args:
            document: the JSON document.
            expected: the version the caller loaded (0 when there was none).

        Returns:
            False when another writer got there first (nothing written).
        """
        ...

    async def ping(self) -> bool:
        """Return True when the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def signing_store_from_url(url: str, **options: Any) -> SigningKeyStore:
    """Create a signing key store from a URL (``memory://``, ``sqlite:///...``, ``file:///...``).

    Args:
        url: the store URL; the same schemes as the key store, plus ``file://``.
        **options: passed to the store's ``from_url``.

    Raises:
        ConfigurationError: for an unknown scheme (the message names the registered ones).
    """
    store: SigningKeyStore = store_from_url(KIND, url, **options)
    return store


class MemorySigningKeyStore:
    """The key set in this process only (tests, demos): lost on restart.

    Args:
        url: ignored (``memory://``).
    """

    holds_plaintext = False

    def __init__(self, url: str = "memory://") -> None:
        self._doc: str | None = None
        self._version = 0

    def __repr__(self) -> str:
        return "MemorySigningKeyStore()"

    async def load(self) -> tuple[str | None, int]:
        """Return the document and its version."""
        return self._doc, self._version

    async def save(self, document: str, *, expected: int) -> bool:
        """Compare-and-set the document.

        Args:
            document: the JSON document.
            expected: the version the caller loaded.
        """
        if expected != self._version:
            return False
        self._doc, self._version = document, expected + 1
        return True

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


class FileSigningKeyStore:
    """A JWKS file the operator manages (``file:///etc/extapi/signing.jwks``).

    The file is a JWKS (``{"keys": [...]}``) with private members; our own members (``status``,
    ``created_at``, ``activated_at``, ``retired_at``) and a top-level ``version`` are added when
    we write it, and are optional when the operator writes it: without ``status`` the first key
    is current and the others are next. Writes go to a ``0600`` temporary file renamed over the
    old one, under an advisory lock (``<file>.lock``), so a reader never sees half a file.

    Args:
        path: the file.
    """

    holds_plaintext = True

    def __init__(self, path: str) -> None:
        if not path:
            raise ConfigurationError("file:// signing key store needs a path")
        self.path = path

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileSigningKeyStore:
        """Create a store from ``file:///abs/path.jwks`` or ``file://relative.jwks``.

        Args:
            url: the URL.
            **options: none are taken.
        """
        if options:
            raise ConfigurationError(f"unknown file store option(s): {', '.join(sorted(options))}")
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        return cls(path)

    def __repr__(self) -> str:
        return f"FileSigningKeyStore({self.path!r})"

    def _read(self) -> tuple[str | None, int]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise StoreError(f"cannot read signing key file: {type(exc).__name__}") from None
        try:
            data = json.loads(text)
        except ValueError:
            # Never echo the content: it holds private keys.
            raise StoreError("signing key file is not valid JSON") from None
        version = data.get("version", 1) if isinstance(data, dict) else 1
        return text, int(version) if isinstance(version, int) else 1

    def _write(self, document: str, expected: int) -> bool:
        directory = os.path.dirname(os.path.abspath(self.path))
        make_private_dirs(directory)
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _, current = self._read()
            if current != expected:
                return False
            data = json.loads(document)
            data["version"] = expected + 1
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(out, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def load(self) -> tuple[str | None, int]:
        """Read the file (a missing file is an empty set)."""
        return await asyncio.to_thread(self._read)

    async def save(self, document: str, *, expected: int) -> bool:
        """Replace the file if its version is still ``expected``.

        Args:
            document: the JSON document.
            expected: the version the caller loaded.
        """
        try:
            return await asyncio.to_thread(self._write, document, expected)
        except OSError as exc:
            raise StoreError(f"cannot write signing key file: {type(exc).__name__}") from None

    async def ping(self) -> bool:
        """Return True when the file (or its directory) is readable."""
        return await asyncio.to_thread(self._readable)

    def _readable(self) -> bool:
        target = self.path if os.path.exists(self.path) else os.path.dirname(self.path) or "."
        return os.access(target, os.R_OK)

    async def aclose(self) -> None:
        """Nothing to release."""
