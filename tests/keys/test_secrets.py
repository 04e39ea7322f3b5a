"""No issued secret appears in a log record, error body, repr, SQLite file or Redis value (A10)."""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from extapi_kit.keys.format import parse_key
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_redis import RedisKeyStore
from extapi_kit.keys.store_sqlite import SQLiteKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from tests.keys.support import RecordingApp, cheap_hasher

pytestmark = pytest.mark.anyio


async def exercise(service: KeyService) -> tuple[list[str], list[bytes]]:
    """Issue, use, misuse, rotate and revoke keys; return the secrets and every response body."""
    secrets: list[str] = []
    bodies: list[bytes] = []
    rec, key = await service.create("k", scopes=["read"], allowed_cidrs=["10.0.0.0/8"])
    other, other_key = await service.create("o", scopes=["write"])
    new, new_key = await service.rotate(rec.id, grace=60)
    secrets += [key, other_key, new_key]
    mw = ApiKeyMiddleware(RecordingApp(), store=service, required_scopes=["read"])
    transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for headers in (
            {"X-API-Key": key},  # wrong network -> 403
            {"X-API-Key": other_key},  # missing scope -> 403
            {"X-API-Key": key[:-1] + "x"},
            {"X-API-Key": key, "Authorization": f"Bearer {other_key}"},
            {"Authorization": f"Bearer {new_key}"},
        ):
            bodies.append((await c.get("/", headers=headers)).content)
        bodies.append((await c.get("/", params={"api_key": key})).content)
    await service.revoke(other.id)
    await service.update(new.id, name="renamed")
    await service.flush()
    return secrets, bodies


def assert_absent(secrets: list[str], haystacks: list[str | bytes]) -> None:
    for key in secrets:
        secret = parse_key(key).secret
        for hay in haystacks:
            text = hay.decode("latin-1") if isinstance(hay, bytes) else hay
            assert key not in text and secret not in text


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = []
    for r in caplog.records:
        if r.name.startswith("httpx"):
            continue  # the test client's own request log
        lines.append(r.getMessage())
        if r.exc_text:
            lines.append(r.exc_text)
    return lines


async def test_no_secret_in_logs_bodies_reprs_or_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite file bytes (db, WAL), logs, bodies and reprs never contain a secret (A10)."""
    caplog.set_level(logging.DEBUG)
    store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    service = KeyService(store, hasher=cheap_hasher())
    secrets, bodies = await exercise(service)
    records, _ = await service.list()
    reprs = [repr(service), repr(store), *(repr(r) for r in records), *(str(r) for r in records)]
    files = [Path(p).read_bytes() for p in glob.glob(str(tmp_path / "keys.db*"))]  # noqa: ASYNC240
    assert files and any(b"xk_live_" in f for f in files)  # display prefixes are stored
    assert_absent(secrets, [*bodies, *reprs, *files, *log_lines(caplog)])
    assert all("hash" not in r.public_dict(0) for r in records)
    await store.aclose()


@pytest.mark.redis
async def test_no_secret_in_redis(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every Redis key and value written by the key store is free of secrets (A10)."""
    caplog.set_level(logging.DEBUG)
    store = RedisKeyStore.from_url(redis_url)
    service = KeyService(store, hasher=cheap_hasher())
    secrets, bodies = await exercise(service)
    client = aredis.Redis.from_url(redis_url, socket_timeout=2)
    dump: list[Any] = []
    async for name in client.scan_iter(count=100):
        dump.append(name)
        kind = await client.type(name)
        if kind == b"string":
            dump.append(await client.get(name) or b"")
        elif kind == b"zset":
            dump += await client.zrange(name, 0, -1)
    await client.aclose()
    assert len(dump) > 6
    assert_absent(secrets, [*dump, *bodies, *log_lines(caplog), repr(store), repr(service)])
    await store.aclose()
