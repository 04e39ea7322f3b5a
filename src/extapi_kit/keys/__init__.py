"""API keys: the key format, hashers, key stores and the :class:`KeyService`.

Store classes (``MemoryKeyStore``, ``SQLiteKeyStore``, ``RedisKeyStore``) are imported from their
modules, or created by URL with ``store_from_url("keys", url)``; importing this package does not
import the Redis client.
"""

from __future__ import annotations

from extapi_kit.keys.format import ParsedKey, generate_key, parse_key
from extapi_kit.keys.hashing import Argon2Hasher, Hasher, HashVerifier, HmacHasher
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService, KeyThrottledError
from extapi_kit.keys.store import KeyStore

__all__ = [
    "Argon2Hasher",
    "HashVerifier",
    "Hasher",
    "HmacHasher",
    "KeyRecord",
    "KeyService",
    "KeyStore",
    "KeyThrottledError",
    "ParsedKey",
    "generate_key",
    "parse_key",
]
