"""Secrets hygiene: issue keys and webhook secrets, fail in every way, grep everything for them."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from extapi_kit.exceptions import WebhookVerificationError
from extapi_kit.webhooks import signing
from extapi_kit.webhooks.manage import WebhookManager
from extapi_kit.webhooks.store_memory import MemoryWebhookStore
from tests.reliability.stack import (
    READ_SCOPE,
    WRITE_SCOPE,
    cheap_service,
    lifespan,
    make_api,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def _files(tmp: Path) -> list[bytes]:
    return [p.read_bytes() for p in tmp.rglob("*") if p.is_file()]


def _redis_dump(url: str) -> list[bytes]:
    """Every key and value of every type, as text (secrets are ASCII, so repr keeps them)."""
    client: Any = redis.Redis.from_url(url, socket_timeout=2)
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"stream": client.xrange,
        b"zset": lambda k: client.zrange(k, 0, -1),
        b"set": client.smembers,
        b"list": lambda k: client.lrange(k, 0, -1),
    }
    try:
        out: list[bytes] = []
        for key in client.scan_iter(count=500):
            read = readers.get(client.type(key))
            out.append(repr((key, read(key) if read else None)).encode())
        return out
    finally:
        client.close()


def _layers(app: Any) -> list[Any]:
    out = []
    while app is not None:
        out.append(app)
        app = getattr(app, "app", None)
    return out


async def test_no_secret_anywhere_after_failing_in_every_way(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A10, A9: after 401/403/404/413/422/429/503-style failures, no API key, webhook secret or
    raw Authorization/X-API-Key value appears in logs, audit rows (SQLite + Redis stream), store
    files, Redis keys/values, error bodies or any repr()."""
    caplog.set_level(logging.DEBUG, logger="extapi_kit")
    service = cheap_service(f"sqlite:///{tmp_path}/keys.db", failures_per_ip=1000)
    reader_rec, reader = await service.create("reader", scopes=[READ_SCOPE])
    writer_rec, writer = await service.create("writer", scopes=[READ_SCOPE, WRITE_SCOPE])
    revoked_rec, revoked = await service.create("revoked", scopes=[READ_SCOPE])
    rotated_rec, rotated_old = await service.create("rotated", scopes=[READ_SCOPE])
    await service.revoke(revoked_rec.id)
    _, rotated_new = await service.rotate(rotated_rec.id, grace=60)
    secrets = [reader, writer, revoked, rotated_old, rotated_new]

    wh_secret = signing.generate_secret()
    manager = WebhookManager(MemoryWebhookStore(), allow_loopback=True)
    endpoint = await manager.add_endpoint("http://127.0.0.1:9/hook")
    secrets += [wh_secret, endpoint.secrets[0].value]
    with pytest.raises(WebhookVerificationError) as bad_sig:
        headers = signing.signature_headers(wh_secret, "msg_1", 1_700_000_000, b"{}")
        signing.verify(b"{}", headers, endpoint.secrets[0].value, now=1_700_000_000)

    audit_db = tmp_path / "audit.db"
    app = make_api(tmp_path / "effects.log").build(
        key_store=service,
        rate_limit_storage=redis_url,
        idempotency_store=redis_url,
        audit_sink=f"sqlite:///{audit_db}",
        body_limit="1KiB",
        write="3/minute",
        options={"audit": {"sink": [f"sqlite:///{audit_db}", redis_url]}},
    )
    bodies: list[bytes] = [str(bad_sig.value).encode()]
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        wrong = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
        calls: list[tuple[str, str, dict[str, str], Any]] = [
            ("GET", "/api/v1/items/1", {"X-API-Key": wrong}, None),  # 401 bad checksum
            ("GET", "/api/v1/items/1", {"Authorization": f"Bearer {revoked}"}, None),  # 401
            ("GET", f"/api/v1/items/1?api_key={reader}", {}, None),  # key in URL refused
            (
                "GET",
                "/api/v1/items/1",
                {"X-API-Key": reader, "Authorization": f"Bearer {writer}"},
                None,
            ),
            ("POST", "/api/v1/orders", {"X-API-Key": reader}, {}),  # 403 scope
            ("GET", "/api/v1/nope", {"X-API-Key": reader}, None),  # 404
            ("POST", "/api/v1/orders", {"X-API-Key": writer}, "x" * 4096),  # 413
            ("POST", "/api/v1/orders", {"X-API-Key": writer, "Idempotency-Key": "k1"}, {"a": 1}),
            ("POST", "/api/v1/orders", {"X-API-Key": writer, "Idempotency-Key": "k1"}, {"a": 2}),
            ("POST", "/api/v1/orders", {"X-API-Key": writer, "Idempotency-Key": " "}, {}),
        ]
        calls += [("POST", "/api/v1/orders", {"X-API-Key": writer}, {}) for _ in range(4)]  # 429
        calls += [("GET", "/api/v1/items/2", {"X-API-Key": s}, None) for s in secrets[-3:]]
        seen: set[int] = set()
        for method, url, headers, body in calls:
            kw: dict[str, Any] = {"headers": headers}
            if isinstance(body, str):
                kw["content"] = body
            elif body is not None:
                kw["json"] = body
            r = await c.request(method, url, **kw)
            seen.add(r.status_code)
            bodies.append(r.content)
            bodies.append(repr(r.headers).encode())
            assert r.status_code != 500
    assert {401, 403, 404, 413, 429} <= seen, seen
    assert seen & {400, 422}, seen

    haystack = [rec.getMessage().encode() for rec in caplog.records]
    haystack += [repr(rec.__dict__).encode() for rec in caplog.records]
    haystack += _files(tmp_path) + _redis_dump(redis_url) + bodies
    conn = sqlite3.connect(audit_db)
    haystack += [repr(row).encode() for row in conn.execute("SELECT * FROM audit_records")]
    audit_rows = conn.execute("SELECT count(*) FROM audit_records").fetchone()[0]
    conn.close()
    assert audit_rows == len(calls)
    objects: list[Any] = [service, manager, endpoint, reader_rec, writer_rec, *_layers(app)]
    haystack += [repr(o).encode() for o in objects]
    haystack += [repr(await service.get(r.id)).encode() for r in (reader_rec, writer_rec)]
    blob = b"\n".join(haystack)
    needles = {s for s in secrets} | {f"Bearer {s}" for s in secrets}
    needles |= {s.split("_")[-1] for s in secrets if s.startswith("whsec_")}
    hits = [n[:12] + "..." for n in needles if n.encode() in blob]
    assert not hits, f"secrets leaked: {hits}"
    assert len(blob) > 10_000 and reader_rec.id.encode() in blob  # searched real material
    await service.aclose()
