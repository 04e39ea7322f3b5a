"""IdempotencyMiddleware: replay, races, mismatches, scoping, expiry and configuration."""

from __future__ import annotations

import anyio
import httpx
import pytest

from extapi_kit.context import RouteSettings
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.idempotency import MemoryIdempotencyStore
from extapi_kit.middleware.idempotency import IdempotencyMiddleware
from extapi_kit.testing import FakeClock
from tests.idempotency.support import KEY, Recorder, client, counting_app, outer_layer

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0


async def post(c: httpx.AsyncClient, body: bytes = b'{"a":1}', **headers: str) -> httpx.Response:
    h = {"idempotency-key": KEY, "content-type": "application/json"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return await c.post("/orders", content=body, headers=h)


async def test_replay_runs_the_side_effect_once() -> None:
    """I1: the same key and body twice run the app once; the retry gets the stored answer."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec)
    async with client(app) as c:
        first = await post(c)
        second = await post(c)
    assert rec.calls == 1
    assert first.status_code == second.status_code == 201
    assert second.content == first.content == b'{"n": 1, "len": 7}'
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-custom"] == "kept"
    assert second.headers["content-type"] == "application/json"
    for dropped in ("date", "ratelimit", "x-ratelimit-remaining"):
        assert dropped not in second.headers
    assert rec.outcomes == ["stored", "replayed"]


async def test_bare_token_and_sf_string_are_the_same_key() -> None:
    """A bare token and the same value as an sf-string address the same record."""
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec))
    async with client(app) as c:
        await post(c, idempotency_key='"abc-123"')
        again = await post(c, idempotency_key="abc-123")
    assert rec.calls == 1 and again.headers["idempotent-replayed"] == "true"


async def test_twenty_concurrent_requests_execute_once() -> None:
    """I2: 20 concurrent requests with one key run the app once; the others get 409 Retry-After."""
    rec = Recorder(gate=anyio.Event())
    app = IdempotencyMiddleware(counting_app(rec))
    responses: list[httpx.Response] = []
    others_answered = anyio.Event()
    async with client(app) as c:

        async def one() -> None:
            responses.append(await post(c))
            if len(responses) == 19:
                others_answered.set()

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
            await others_answered.wait()
            assert rec.gate is not None
            rec.gate.set()
        replay = await post(c)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    assert rec.calls == 1
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.headers["retry-after"] == "1"
    assert conflict.json()["type"].endswith("/idempotency-key-in-use")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


async def test_different_body_is_a_mismatch() -> None:
    """I3: the same key with another body (or path, query, content type) is 422; no side effect."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec)
    async with client(app) as c:
        await post(c, b'{"a":1}')
        other_body = await post(c, b'{"a":2}')
        other_type = await post(c, b'{"a":1}', content_type="text/plain")
        other_query = await c.post(
            "/orders?x=1", content=b'{"a":1}', headers={"idempotency-key": KEY}
        )
    assert rec.calls == 1
    for r in (other_body, other_type, other_query):
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/idempotency-key-mismatch")
    assert rec.outcomes[1:] == ["mismatch", "mismatch", "mismatch"]


async def test_tenants_never_share_records() -> None:
    """Z3: two principals using the same key each run once and each replay only their own answer."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec)
    async with client(app) as c:
        a1 = await post(c, x_test_key="key_A")
        b1 = await post(c, x_test_key="key_B")
        a2 = await post(c, x_test_key="key_A")
        b2 = await post(c, x_test_key="key_B")
    assert rec.calls == 2
    assert a1.json()["n"] == a2.json()["n"] == 1
    assert b1.json()["n"] == b2.json()["n"] == 2


async def test_anonymous_clients_are_scoped_by_ip() -> None:
    """Z3 without auth: the same key from two client addresses are two separate records."""
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec))
    async with client(app, "203.0.113.7") as c1, client(app, "198.51.100.9") as c2:
        await post(c1)
        await post(c2)
        again = await post(c2)
    assert rec.calls == 2 and again.json()["n"] == 2


async def test_expired_key_is_reusable_after_ttl() -> None:
    """I5: after the TTL the same key runs the request again (FakeClock, no sleeping)."""
    clock = FakeClock(T0)
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec), clock=clock)
    async with client(app) as c:
        await post(c)
        clock.advance(24 * 3600 - 1)
        assert (await post(c)).headers.get("idempotent-replayed") == "true"
        clock.advance(1)
        fresh = await post(c, b"{}")
    assert rec.calls == 2 and "idempotent-replayed" not in fresh.headers


async def test_expired_lock_is_taken_over_and_late_completion_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler outliving lock_timeout loses its lock: a retry runs; the late result is dropped."""
    clock = FakeClock(T0)
    rec = Recorder(gate=anyio.Event(), entered=anyio.Event())
    app = outer_layer(
        IdempotencyMiddleware(counting_app(rec), clock=clock, lock_timeout="60s"), rec
    )
    async with client(app) as c, anyio.create_task_group() as tg:
        tg.start_soon(post, c)
        assert rec.entered is not None
        await rec.entered.wait()
        clock.advance(61)
        assert rec.gate is not None
        rec.gate.set()
        await post(c)
    assert rec.calls == 2
    assert sorted(o or "" for o in rec.outcomes) == ["store_failed", "stored"]
    assert "lost before completion" in caplog.text
    assert "8e03978e" not in caplog.text


async def test_missing_key_when_required_is_400() -> None:
    """A handled request without a key is 400 idempotency-key-missing when required; app not run."""
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec), required=True)
    async with client(app) as c:
        r = await c.post("/orders", content=b"{}")
    assert r.status_code == 400 and r.json()["type"].endswith("/idempotency-key-missing")
    assert rec.calls == 0


async def test_missing_key_when_optional_runs_normally() -> None:
    """Without a key and not required, every request runs (outcome 'absent')."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec)
    async with client(app) as c:
        await c.post("/orders", content=b"{}")
        await c.post("/orders", content=b"{}")
    assert rec.calls == 2 and rec.outcomes == ["absent", "absent"]


@pytest.mark.parametrize(
    "headers",
    [
        [("idempotency-key", "")],
        [("idempotency-key", '"unterminated')],
        [("idempotency-key", "x" * 256)],
        [("idempotency-key", "a"), ("idempotency-key", "b")],
    ],
)
async def test_invalid_key_is_400(headers: list[tuple[str, str]]) -> None:
    """Empty, malformed, too long or repeated keys are 400 idempotency-key-invalid; app not run."""
    rec = Recorder()
    app = IdempotencyMiddleware(counting_app(rec))
    async with client(app) as c:
        r = await c.post("/orders", content=b"{}", headers=headers)
    assert r.status_code == 400 and r.json()["type"].endswith("/idempotency-key-invalid")
    assert rec.calls == 0


async def test_other_methods_pass_through() -> None:
    """GET and PUT are not handled by default: each call runs, no record, no replay header."""
    rec = Recorder()
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec)
    async with client(app) as c:
        for _ in range(2):
            r = await c.get("/orders", headers={"idempotency-key": KEY})
            assert "idempotent-replayed" not in r.headers
        await c.put("/orders", content=b"{}", headers={"idempotency-key": KEY})
    assert rec.calls == 3 and rec.outcomes == [None, None, None]


async def test_rules_by_path_prefix() -> None:
    """Path rules switch handling off, on or required; the longest prefix wins."""
    rec = Recorder()
    mw = IdempotencyMiddleware(
        counting_app(rec),
        rules={"/admin": "off", "/orders": "required", "/orders/bulk": "on"},
    )
    async with client(mw) as c:
        assert (await c.post("/orders", content=b"{}")).status_code == 400
        assert (await c.post("/orders/bulk", content=b"{}")).status_code == 201
        assert (await c.post("/ordersx", content=b"{}")).status_code == 201
        for _ in range(2):
            await c.post("/admin/x", content=b"{}", headers={"idempotency-key": KEY})
    assert rec.calls == 4
    with pytest.raises(ConfigurationError):
        IdempotencyMiddleware(counting_app(rec), rules={"/x": "maybe"})


async def test_registry_route_decides_and_scopes_by_template() -> None:
    """With a matched route, its idempotent flag decides and records are scoped by its template."""
    rec = Recorder()
    route = RouteSettings(template="/orders/{id}", method="PUT", idempotent=True)
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec, route)
    async with client(app) as c:
        await c.put("/orders/1", content=b"{}", headers={"idempotency-key": KEY})
        replay = await c.put("/orders/1", content=b"{}", headers={"idempotency-key": KEY})
        other = await c.put("/orders/2", content=b"{}", headers={"idempotency-key": KEY})
    assert replay.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    rec2 = Recorder()
    plain = RouteSettings(template="/orders", method="POST", idempotent=False)
    app2 = outer_layer(IdempotencyMiddleware(counting_app(rec2)), rec2, plain)
    async with client(app2) as c:
        await post(c)
        await post(c)
    assert rec2.calls == 2


async def test_route_can_require_the_key() -> None:
    """A route declaring idempotency_required answers 400 without a key."""
    rec = Recorder()
    route = RouteSettings(template="/pay", idempotent=True, extra={"idempotency_required": True})
    app = outer_layer(IdempotencyMiddleware(counting_app(rec)), rec, route)
    async with client(app) as c:
        r = await c.post("/pay", content=b"{}")
    assert r.status_code == 400 and rec.calls == 0


async def test_store_holds_only_hashes() -> None:
    """Records are keyed by a SHA-256 digest; the raw Idempotency-Key is stored nowhere."""
    store = MemoryIdempotencyStore()
    app = IdempotencyMiddleware(counting_app(Recorder()), store=store)
    async with client(app) as c:
        await post(c, idempotency_key='"my-very-secret-derived-key"')
    [(key, record)] = list(store._records.items())
    assert len(key) == 64 and "secret" not in key and "secret" not in repr(record)


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 0},
        {"lock_timeout": "-1s"},
        {"max_key_length": 0},
        {"oversized_request": "drop"},
        {"store": "mysql://x"},
    ],
)
def test_bad_configuration_is_refused(options: dict[str, object]) -> None:
    """Invalid settings raise ConfigurationError at construction, never per request."""
    with pytest.raises(ConfigurationError):
        IdempotencyMiddleware(counting_app(Recorder()), **options)  # type: ignore[arg-type]


async def test_lifespan_and_websocket_pass_through() -> None:
    """Non-HTTP scopes reach the app untouched."""
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    mw = IdempotencyMiddleware(app)  # type: ignore[arg-type]

    async def noop_receive() -> dict[str, object]:
        return {}

    async def noop_send(message: object) -> None:
        return None

    for kind in ("lifespan", "websocket"):
        await mw({"type": kind}, noop_receive, noop_send)
    assert seen == ["lifespan", "websocket"]
