"""Core pieces: problem+json rendering, the request context, scope matching, units, store URLs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit import ConfigurationError, get_context, store_from_url
from extapi_kit._asgi import close_websocket, get_header, get_header_all
from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit._units import MAX_DURATION, parse_duration, parse_size
from extapi_kit.context import SCOPE_KEY, Principal, has_scope, scope_matches
from extapi_kit.problems import PROBLEMS, Problem, problem_app, render_problem
from extapi_kit.stores import register_store, registered_schemes
from extapi_kit.stores._sqlite import SQLiteDatabase, sqlite_path_from_url
from extapi_kit.testing import FakeClock


def test_problem_body_is_rfc9457() -> None:
    """A rendered problem carries type, title, status, detail and extensions as JSON."""
    status, headers, body = render_problem(
        "validation-error", "bad field", extensions={"errors": [{"loc": ["a"]}]}
    )
    doc = json.loads(body)
    assert status == 422
    assert doc["type"].endswith("/validation-error")
    assert doc["title"] == "Request validation failed"
    assert doc["detail"] == "bad field"
    assert doc["errors"] == [{"loc": ["a"]}]
    assert (b"content-type", b"application/problem+json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers


def test_problem_extensions_cannot_override_core_members() -> None:
    """Extensions never replace the standard members (type/status cannot be spoofed)."""
    body = PROBLEMS["unauthorized"].body(extensions={"status": 200, "type": "x"})
    doc = json.loads(body)
    assert doc["status"] == 401
    assert doc["type"].endswith("/unauthorized")


def test_quota_exceeded_uses_ietf_type() -> None:
    """The rate-limit problem uses the type registered by the IETF ratelimit-headers draft."""
    assert PROBLEMS["quota-exceeded"].type.startswith("https://iana.org/")


def test_problem_slugs_unique_and_stable() -> None:
    """Every problem type is unique and its type URI ends with its slug."""
    types = [p.type for p in PROBLEMS.values()]
    assert len(types) == len(set(types))
    custom = Problem("x-test", 418, "Teapot")
    assert custom.type.endswith("/x-test")


@pytest.mark.anyio
async def test_problem_app_records_rejection() -> None:
    """problem_app answers with the problem and records its slug on the request context."""
    seen: list[Scope] = []
    inner = problem_app("forbidden", headers=[(b"x-extra", b"1")])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await inner(scope, receive, send)

    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/x")
    assert resp.status_code == 403
    assert resp.headers["x-extra"] == "1"
    assert get_context(seen[0]).rejection == "forbidden"


def test_context_created_once() -> None:
    """get_context creates the context at scope['extapi_kit'] once and returns the same object."""
    scope: Scope = {"type": "http"}
    ctx = get_context(scope)
    assert scope[SCOPE_KEY] is ctx
    assert get_context(scope) is ctx


@pytest.mark.parametrize(
    ("granted", "required", "ok"),
    [
        ("projects:read", "projects:read", True),
        ("projects:*", "projects:read", True),
        ("projects:*", "projectsx:read", False),
        ("*", "anything", True),
        ("projects:read", "projects:write", False),
    ],
)
def test_scope_matches(granted: str, required: str, ok: bool) -> None:
    """Wildcard scopes cover their namespace only (A8)."""
    assert scope_matches(granted, required) is ok


def test_empty_scopes_deny() -> None:
    """A key with no scopes holds no scope (A8)."""
    assert not has_scope(frozenset(), "projects:read")
    assert Principal(key_id="k", scopes=frozenset({"projects:*"})).has_scope("projects:write")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512KiB", 512 * 1024),
        ("10MB", 10_000_000),
        ("1 MiB", 1024 * 1024),
        ("2048", 2048),
        (4096, 4096),
        ("1.5KiB", 1536),
        ("1GiB", 1024**3),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    """Size shorthands parse to bytes with decimal and binary units."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "-1", "1.1B", "5XB", -5, True, 1.5])
def test_parse_size_rejects(bad: object) -> None:
    """Malformed sizes raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        parse_size(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["", "B", "KiB", "MiB", "kB"]))
def test_parse_size_property(n: int, unit: str) -> None:
    """Any whole number with a unit parses to n times that unit."""
    factor = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "kB": 1000}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", 30 * 86400), ("1h30m", 5400), ("250ms", 0.25), ("15", 15), (2.5, 2.5), ("1w", 604800)],
)
def test_parse_duration(text: str | float, expected: float) -> None:
    """Duration shorthands parse to seconds."""
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "d", "5x", "1h 2q", "-3", -1, False, None])
def test_parse_duration_rejects(bad: object) -> None:
    """Malformed durations raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "absurd",
    ["99999999999999999d", "1e300", 1e300, "9" * 400 + "s", "1e400", 10**400, "nan"],
)
def test_parse_duration_rejects_absurd_magnitudes(absurd: object) -> None:
    """M7: non-finite durations and ones beyond MAX_DURATION (100 years) raise a clear error."""
    with pytest.raises(ConfigurationError, match="duration"):
        parse_duration(absurd)  # type: ignore[arg-type]


def test_parse_duration_accepts_up_to_the_bound() -> None:
    """M7: durations up to MAX_DURATION still parse (a 100-year key expiry is allowed)."""
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    assert parse_duration("5200w") == 5200 * 604800


def test_store_from_url_names_registered_schemes() -> None:
    """An unknown scheme or kind is refused with the registered names in the message."""
    with pytest.raises(ConfigurationError, match="memory://"):
        store_from_url("keys", "mysql://x")
    with pytest.raises(ConfigurationError, match="known kinds"):
        store_from_url("nope", "memory://")
    with pytest.raises(ConfigurationError):
        store_from_url("keys", "no-scheme")


def test_register_store_custom_factory() -> None:
    """A user-registered scheme is created through its factory (or its from_url)."""
    created: list[str] = []

    def factory(url: str, **opts: object) -> str:
        created.append(url)
        return "store"

    register_store("test-kind", "custom", factory)
    assert "custom" in registered_schemes("test-kind")
    assert store_from_url("test-kind", "custom://x") == "store"
    assert created == ["custom://x"]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///rel.db", "rel.db"),
        ("sqlite:////abs/x.db", "/abs/x.db"),
        ("sqlite://:memory:", ":memory:"),
    ],
)
def test_sqlite_path_from_url(url: str, path: str) -> None:
    """SQLite URLs map to relative, absolute or in-memory paths."""
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "redis://x"])
def test_sqlite_path_from_url_rejects(url: str) -> None:
    """Malformed SQLite URLs are refused."""
    with pytest.raises(ConfigurationError):
        sqlite_path_from_url(url)


@pytest.mark.anyio
async def test_sqlite_database_roundtrip(tmp_path: Path) -> None:
    """The SQLite front runs statements on its thread, in WAL mode, and wraps errors."""
    db = SQLiteDatabase(str(tmp_path / "sub" / "t.db"))
    assert await db.ping()
    await db.execute("CREATE TABLE t (a INTEGER)")
    await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    rows = await db.fetchall("SELECT a FROM t ORDER BY a")
    assert [r["a"] for r in rows] == [1, 2]
    mode = await db.fetchone("PRAGMA journal_mode")
    assert mode is not None and mode[0] == "wal"
    from extapi_kit.exceptions import StoreError

    with pytest.raises(StoreError):
        await db.execute("INSERT INTO missing VALUES (1)")
    await db.aclose()
    await db.aclose()
    with pytest.raises(StoreError):
        await db.fetchone("SELECT 1")


def test_fake_clock() -> None:
    """FakeClock only moves when told."""
    clock = FakeClock(100.0)
    clock.advance(5)
    assert clock() == 105.0
    clock.set(7)
    assert clock() == 7.0
    assert "7.0" in repr(clock)


@pytest.mark.anyio
async def test_asgi_helpers() -> None:
    """Header helpers read raw lower-case headers; close_websocket sends a close frame."""
    scope: Scope = {"headers": [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]}
    assert get_header(scope, b"a") == b"1"
    assert get_header(scope, b"z") is None
    assert get_header_all(scope, b"a") == [b"1", b"3"]
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await close_websocket(send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


@pytest.mark.parametrize("bad", ["x5s", "1e9", 10**400, float("nan"), -1, 253402300800, True])
def test_check_timestamp_refuses_what_a_date_cannot_show(bad: object) -> None:
    """M7: timestamps must be numbers from 1970 to 9999-12-31T23:59:59Z; junk raises clearly."""
    from extapi_kit._units import MAX_TIMESTAMP, check_timestamp

    with pytest.raises(ConfigurationError, match="expires_at"):
        check_timestamp(bad, "expires_at")
    assert check_timestamp(MAX_TIMESTAMP) == MAX_TIMESTAMP and check_timestamp(0) == 0.0
    with pytest.raises(ConfigurationError, match="invalid duration"):
        parse_duration("x5s")
