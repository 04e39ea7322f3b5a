"""Signing keys: RFC 8037 vectors through our joserfc wiring, rotation, sealing, persistence."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jws
from joserfc.jwk import OKPKey

from extapi_kit.exceptions import ConfigurationError, ConflictError
from extapi_kit.oauth import SigningKeys
from extapi_kit.oauth.signing import jws_registry
from extapi_kit.oauth.signing_store import MemorySigningKeyStore
from tests.oauth.issue_support import SECRET

pytestmark = pytest.mark.anyio

# RFC 8037 appendix A.1 (private key), A.3 (its RFC 7638 thumbprint), A.4 (a signature).
RFC8037_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_PAYLOAD = b"Example of Ed25519 signing"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)
PRIVATE_VALUES = (RFC8037_JWK["d"],)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rfc8037_signature_through_our_registry() -> None:
    """RFC 8037 A.4: our JWS registry signs the vector's payload to the vector's exact JWS."""
    key = OKPKey.import_key(dict(RFC8037_JWK))
    out = jws.serialize_compact({"alg": "EdDSA"}, RFC8037_PAYLOAD, key, registry=jws_registry())
    assert out == RFC8037_JWS
    assert key.thumbprint() == RFC8037_THUMBPRINT  # A.3


async def test_rfc8037_key_from_operator_jwks_file(tmp_path: Path) -> None:
    """An operator's JWKS file holding the RFC 8037 key: kid is its A.3 thumbprint, it becomes
    the current key, the A.4 JWS verifies with the published public key, and PyJWT agrees."""
    path = tmp_path / "signing.jwks"
    path.write_text(json.dumps({"keys": [{**RFC8037_JWK, "alg": "EdDSA"}]}))
    signing = SigningKeys(f"file://{path}")
    current = await signing.current()
    assert current.kid == RFC8037_THUMBPRINT
    published = await signing.jwks()
    pub = next(k for k in published["keys"] if k["kid"] == RFC8037_THUMBPRINT)
    assert "d" not in pub and pub["x"] == RFC8037_JWK["x"]
    obj = jws.deserialize_compact(
        RFC8037_JWS, OKPKey.import_key(pub), registry=jws_registry(["EdDSA"])
    )
    assert obj.payload == RFC8037_PAYLOAD
    token = await signing.sign({"sub": "k"})
    verified = pyjwt.decode(token, pyjwt.PyJWK(pub).key, algorithms=["EdDSA"])
    assert verified == {"sub": "k"}
    assert pyjwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "at+jwt",
        "kid": RFC8037_THUMBPRINT,
    }


async def test_first_use_creates_current_and_next_and_publishes_both() -> None:
    """A new set has one current and one next key; the JWKS publishes both, public parts only."""
    signing = SigningKeys()
    keys = await signing.keys()
    assert sorted(k.state for k in keys) == ["current", "next"]
    jwks = await signing.jwks()
    assert {k["kid"] for k in jwks["keys"]} == {k.kid for k in keys}
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}


async def test_rotation_promotes_the_published_next_key_and_keeps_the_retired_one() -> None:
    """rotate(): the key that was published as next signs now; the old current stays published
    (retired) for ``retain``, then is dropped; a token signed before rotation still verifies."""
    clock = Clock()
    signing = SigningKeys(clock=clock, retain=3600)
    before = {k.state: k for k in await signing.keys()}
    old_token = await signing.sign({"sub": "a"})
    published_before = {k["kid"] for k in (await signing.jwks())["keys"]}
    assert before["next"].kid in published_before  # published before it is used
    clock.now += 10
    after = {k.state: k for k in await signing.rotate()}
    assert after["current"].kid == before["next"].kid
    assert after["retired"].kid == before["current"].kid
    assert after["next"].kid not in published_before
    new_token = await signing.sign({"sub": "b"})
    assert pyjwt.get_unverified_header(new_token)["kid"] == before["next"].kid
    jwks = pyjwt.PyJWKSet.from_dict(await signing.jwks())
    old_kid = pyjwt.get_unverified_header(old_token)["kid"]
    assert pyjwt.decode(old_token, jwks[old_kid].key, algorithms=["EdDSA"]) == {"sub": "a"}
    clock.now += 3600 + 1
    remaining = {k.kid for k in await signing.keys()}
    assert before["current"].kid not in remaining
    assert before["current"].kid not in {k["kid"] for k in (await signing.jwks())["keys"]}


async def test_es256_option() -> None:
    """algorithm="ES256" creates P-256 keys and signs ES256 tokens PyJWT verifies."""
    signing = SigningKeys(algorithm="ES256")
    token = await signing.sign({"sub": "x"})
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    key = pyjwt.PyJWKSet.from_dict(await signing.jwks())[header["kid"]]
    assert pyjwt.decode(token, key.key, algorithms=["ES256"]) == {"sub": "x"}


async def test_rotate_to_another_algorithm() -> None:
    """rotate(algorithm="ES256") makes the new next key ES256; the current keeps signing EdDSA."""
    signing = SigningKeys()
    keys = await signing.rotate(algorithm="ES256")
    by_state = {k.state: k for k in keys}
    assert by_state["current"].alg == "EdDSA" and by_state["next"].alg == "ES256"


def test_configuration_is_checked() -> None:
    """Only EdDSA and ES256; a persistent store needs a secret of at least 32 bytes."""
    with pytest.raises(ConfigurationError):
        SigningKeys(algorithm="HS256")
    with pytest.raises(ConfigurationError):
        SigningKeys(algorithm="none")
    with pytest.raises(ConfigurationError, match="secret="):
        SigningKeys("sqlite:///never-created.db")
    with pytest.raises(ConfigurationError, match="32"):
        SigningKeys("sqlite:///never-created.db", secret="short")
    assert not Path("never-created.db").exists()


async def test_sqlite_rows_hold_sealed_private_keys_only(tmp_path: Path) -> None:
    """O1: the database never holds a private key in the clear: rows carry AES-GCM ciphertext,
    a second instance with the secret reads the same keys, a wrong secret is refused."""
    db = tmp_path / "keys.db"
    signing = SigningKeys(f"sqlite:///{db}", secret=SECRET)
    keys = await signing.keys()
    token = await signing.sign({"sub": "x"})
    privates = [str(k._private["d"]) for k in keys]
    await signing.aclose()
    conn = sqlite3.connect(db)
    (data,) = conn.execute("SELECT data FROM extapi_signing_keys").fetchone()
    conn.close()
    assert '"d"' not in data and '"sealed"' in data
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))  # noqa: ASYNC240
    for private in privates:
        assert private.encode() not in blob
    again = SigningKeys(f"sqlite:///{db}", secret=SECRET)
    assert {k.kid for k in await again.keys()} == {k.kid for k in keys}
    jwk = pyjwt.PyJWKSet.from_dict(await again.jwks())[pyjwt.get_unverified_header(token)["kid"]]
    assert pyjwt.decode(token, jwk.key, algorithms=["EdDSA"]) == {"sub": "x"}
    await again.aclose()
    wrong = SigningKeys(f"sqlite:///{db}", secret="w" * 40)
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        await wrong.keys()
    await wrong.aclose()


async def test_no_private_key_in_repr_info_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """O1: repr of keys, the set and its store, info() and every log line hold no private value."""
    caplog.set_level(logging.DEBUG)
    store = MemorySigningKeyStore()
    signing = SigningKeys(store, secret=SECRET)
    keys = await signing.rotate()
    privates = [str(k._private["d"]) for k in keys]
    shown = " ".join(
        [repr(signing), repr(store), *map(repr, keys), json.dumps([k.info() for k in keys])]
    )
    shown += json.dumps(await signing.jwks()) + caplog.text
    for value in privates:
        assert value not in shown
    assert SECRET not in shown
    doc, _ = await store.load()
    assert doc is not None
    for value in privates:
        assert value not in doc


async def test_concurrent_first_use_creates_one_current_key(tmp_path: Path) -> None:
    """Two instances starting on one empty store at once end with the same single current key."""
    url = f"sqlite:///{tmp_path}/keys.db"
    a, b = SigningKeys(url, secret=SECRET), SigningKeys(url, secret=SECRET)
    ka, kb = await asyncio.gather(a.keys(), b.keys())
    assert {k.kid for k in ka} == {k.kid for k in kb}
    assert [k.state for k in ka].count("current") == 1
    await a.aclose()
    await b.aclose()


async def test_concurrent_rotation_conflict_changes_nothing(tmp_path: Path) -> None:
    """A rotation racing another one is refused (ConflictError) instead of interleaving."""
    url = f"sqlite:///{tmp_path}/keys.db"
    a, b = SigningKeys(url, secret=SECRET), SigningKeys(url, secret=SECRET)
    await a.keys()
    await b.keys()
    await a.rotate()
    # b still holds the old version: its compare-and-set must fail, not overwrite a's rotation.
    before = {k.kid for k in await a.keys(refresh=True)}
    with pytest.raises(ConflictError):
        await _rotate_with_stale_version(b)
    assert {k.kid for k in await a.keys(refresh=True)} == before
    await a.aclose()
    await b.aclose()


async def _rotate_with_stale_version(signing: SigningKeys) -> None:
    stale = signing._version

    async def no_reload(force: bool = False) -> list[Any]:
        signing._version = stale
        return signing._keys

    signing._fresh = no_reload  # type: ignore[method-assign]
    await signing.rotate()


@pytest.mark.parametrize(
    "kind", ["memory", "file", "sqlite", "redis", "redis-cluster", "postgresql"]
)
async def test_persistence_on_each_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each store URL keeps the set: a second instance sees the same keys and a rotation."""
    store: Any
    secret: str | None = SECRET
    if kind == "memory":
        store, secret = MemorySigningKeyStore(), None
    elif kind == "file":
        store, secret = f"file://{tmp_path}/signing.jwks", None
    elif kind == "sqlite":
        store = f"sqlite:///{tmp_path}/keys.db"
    else:
        fixture = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}.get(kind, "pg_url")
        store = request.getfixturevalue(fixture)

    def make() -> SigningKeys:
        return SigningKeys(store, secret=secret)

    first = make()
    created = await first.keys()
    assert await first.store.ping()
    second = make()
    assert {k.kid: k.state for k in await second.keys()} == {k.kid: k.state for k in created}
    rotated = await second.rotate()
    assert {k.kid: k.state for k in await first.keys(refresh=True)} == {
        k.kid: k.state for k in rotated
    }
    if kind == "file":
        assert (tmp_path / "signing.jwks").stat().st_mode & 0o777 == 0o600
    if kind != "memory":
        await first.aclose()
        await second.aclose()
