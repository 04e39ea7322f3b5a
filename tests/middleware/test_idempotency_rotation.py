"""Idempotency across key rotation (case I6): records follow the key's lineage, not its id."""

from __future__ import annotations

from pathlib import Path

import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.idempotency import IdempotencyMiddleware
from tests.idempotency.support import KEY, Recorder, client, counting_app
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "redis"])
def idem_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/idem.db"
    return str(request.getfixturevalue("redis_url"))


async def test_retry_with_the_rotated_key_replays(idem_url: str, tmp_path: Path) -> None:
    """I6, SQLite and Redis stores: a retry sent with the new key during the rotation grace
    replays the answer stored for the old key (side effect once), twice rotated too; another
    key of the same owner still gets its own record (Z3)."""
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0)
    rec = Recorder()
    idem = IdempotencyMiddleware(counting_app(rec), store=idem_url)
    app = ApiKeyMiddleware(idem, store=keys)
    old, old_key = await keys.create("acme", owner="acme")
    _, sibling_key = await keys.create("acme-2", owner="acme")
    h = {"idempotency-key": KEY, "content-type": "application/json"}
    try:
        async with client(app) as c:
            first = await c.post("/orders", content=b'{"a":1}', headers={**h, "x-api-key": old_key})
            assert first.status_code == 201 and rec.calls == 1
            new, new_key = await keys.rotate(old.id, grace="1h")
            assert new.lineage_id == old.id
            retry = await c.post("/orders", content=b'{"a":1}', headers={**h, "x-api-key": new_key})
            assert retry.status_code == 201, retry.text
            assert retry.headers.get("idempotent-replayed") == "true"
            assert retry.content == first.content and rec.calls == 1
            newer, newer_key = await keys.rotate(new.id, grace="1h")
            assert newer.lineage_id == old.id
            again = await c.post(
                "/orders", content=b'{"a":1}', headers={**h, "x-api-key": newer_key}
            )
            assert again.headers.get("idempotent-replayed") == "true" and rec.calls == 1
            other = await c.post(
                "/orders", content=b'{"a":1}', headers={**h, "x-api-key": sibling_key}
            )
            assert "idempotent-replayed" not in other.headers and rec.calls == 2
    finally:
        await idem.aclose()
        await keys.aclose()
