"""Hashers: argon2id and HMAC formats, rehash detection, constant-time compare, thread offload."""

from __future__ import annotations

import hmac
import threading

import pytest
from argon2 import Parameters, profiles

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.hashing import (
    OWASP_ARGON2_PARAMETERS,
    Argon2Hasher,
    HashVerifier,
    HmacHasher,
)
from tests.keys.support import SpyHasher

PEPPER = b"p" * 32


def test_argon2_default_is_owasp_minimum() -> None:
    """The default argon2 parameters are argon2id m=19 MiB, t=2, p=1, named in the stored hash."""
    assert OWASP_ARGON2_PARAMETERS.memory_cost == 19456
    assert OWASP_ARGON2_PARAMETERS.time_cost == 2
    assert OWASP_ARGON2_PARAMETERS.parallelism == 1
    stored = Argon2Hasher().hash("s3cret")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_argon2_verify_and_rehash() -> None:
    """argon2 verifies right/wrong secrets and flags hashes made with other parameters."""
    cheap = Argon2Hasher(profiles.CHEAPEST)
    stored = cheap.hash("right")
    assert cheap.verify(stored, "right")
    assert not cheap.verify(stored, "wrong")
    assert not cheap.verify("$argon2id$garbage", "right")
    assert not cheap.needs_rehash(stored)
    other = Argon2Hasher(
        Parameters(
            type=profiles.CHEAPEST.type,
            version=19,
            salt_len=8,
            hash_len=4,
            time_cost=2,
            memory_cost=8,
            parallelism=1,
        )
    )
    assert other.needs_rehash(stored)
    assert other.verify(stored, "right")
    assert cheap.handles(stored) and not cheap.handles("hmac-sha256$1$ab")


def test_hmac_format_and_pepper_rotation() -> None:
    """HMAC hashes read hmac-sha256$<pepper_id>$<hex>; an old pepper verifies and needs rehash."""
    old = HmacHasher(PEPPER, pepper_id="a")
    stored = old.hash("right")
    assert stored.startswith("hmac-sha256$a$") and len(stored.rsplit("$", 1)[1]) == 64
    new = HmacHasher(b"q" * 32, pepper_id="b", old_peppers={"a": PEPPER})
    assert new.handles(stored) and new.verify(stored, "right")
    assert new.needs_rehash(stored) and not new.needs_rehash(new.hash("x"))
    assert not new.verify(stored, "wrong")
    assert not HmacHasher(b"q" * 32, pepper_id="b").handles(stored)
    assert not new.verify("md5$a$00", "right")


def test_hmac_compare_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Digest comparison goes through hmac.compare_digest (A12)."""
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    hasher = HmacHasher(PEPPER)
    assert hasher.verify(hasher.hash("x"), "x")
    assert calls


def test_no_plain_equality_on_secrets_in_source() -> None:
    """No key module compares digests or secrets with == (A12 lint-style check)."""
    import pathlib

    import extapi_kit.keys as pkg

    root = pathlib.Path(pkg.__file__).parent
    offenders = []
    for path in root.glob("*.py"):
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            if ("digest" in code or "secret" in code or "checksum" in code) and " == " in code:
                if "current.hash == record.hash" not in code:
                    offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []


def test_hasher_config_errors_and_repr() -> None:
    """Short peppers and bad pepper ids are refused; reprs never show a pepper."""
    with pytest.raises(ConfigurationError):
        HmacHasher(b"short")
    with pytest.raises(ConfigurationError):
        HmacHasher(PEPPER, pepper_id="a$b")
    assert "ppp" not in repr(HmacHasher(PEPPER))
    assert "m=19456" in repr(Argon2Hasher())


@pytest.mark.anyio
async def test_verifier_runs_in_worker_thread_and_reports_rehash() -> None:
    """HashVerifier verifies off the event-loop thread and returns a new hash for old formats."""
    spy = SpyHasher()
    verifier = HashVerifier(spy, extra=[HmacHasher(PEPPER)], max_concurrency=2)
    stored = await verifier.hash("secret")
    assert await verifier.verify(stored, "secret") == (True, None)
    assert await verifier.verify(stored, "nope") == (False, None)
    assert threading.current_thread().name not in spy.threads
    legacy = HmacHasher(PEPPER).hash("secret")
    ok, new_hash = await verifier.verify(legacy, "secret")
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$")
    assert await verifier.verify("unknown$format", "secret") == (False, None)
