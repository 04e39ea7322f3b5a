"""build() is safe when the user writes the least (issue 18 §2): limits on, audit gap announced."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing import ExternalAPI, HandlerRequest, StackSettings
from extapi_kit.routing.settings import DEFAULT, DEFAULT_READ, DEFAULT_WRITE
from extapi_kit.testing import FakeClock
from tests.routing.conftest import ClientFactory
from tests.routing.upstream_server import UvicornThread

pytestmark = pytest.mark.anyio


def _api(settings: StackSettings | None = None) -> ExternalAPI:
    api = ExternalAPI(settings=settings)

    @api.get("/ping", public=True)
    async def ping(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @api.post("/notes", public=True, status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    return api


def _budget(rate: str) -> int:
    return int(rate.partition("/")[0])


def _audit_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "extapi_kit.routing" and r.levelno == logging.WARNING and "audit" in r.message
    ]


async def test_rate_limiting_is_on_by_default_over_real_http() -> None:
    """A18: build() with no rate-limit settings limits reads and writes, with headers and 429."""
    assert (DEFAULT_READ, DEFAULT_WRITE) == ("100/minute", "20/minute")
    # A still clock only, so a minute boundary mid-test cannot slide the window; no limit is set.
    still = {"rate_limit": {"clock": FakeClock(1_000_020.0)}}
    thread = UvicornThread(_api().build(auth=False, audit_sink=None, options=still))
    thread.start()
    try:
        async with httpx.AsyncClient(base_url=thread.url) as c:
            for _ in range(_budget(DEFAULT_READ)):
                ok = await c.get("/api/v1/ping")
                assert ok.status_code == 200
                assert "ratelimit-policy" in ok.headers and "ratelimit" in ok.headers
            refused = await c.get("/api/v1/ping")
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) > 0
            for _ in range(_budget(DEFAULT_WRITE)):
                assert (await c.post("/api/v1/notes")).status_code == 201
            assert (await c.post("/api/v1/notes")).status_code == 429
    finally:
        thread.stop()


@pytest.mark.parametrize("where", ["build", "settings"])
async def test_explicit_none_disables_rate_limiting(client_for: ClientFactory, where: str) -> None:
    """A18: rate_limit_storage=None, written in build() or StackSettings, still disables it."""
    off: dict[str, Any] = {"rate_limit_storage": None, "audit_sink": None}
    api = _api(StackSettings(**off)) if where == "settings" else _api()
    app = api.build(auth=False) if where == "settings" else api.build(auth=False, **off)
    async with client_for(app) as c:
        for _ in range(_budget(DEFAULT_READ) + 5):
            r = await c.get("/api/v1/ping")
            assert r.status_code == 200 and "ratelimit" not in r.headers


@pytest.mark.parametrize(
    ("settings", "overrides"),
    [
        (None, {"rate_limit_storage": None, "read": "5/minute"}),
        (None, {"rate_limit_storage": None, "write": "1/minute"}),
        (StackSettings(read="5/minute"), {"rate_limit_storage": None}),
        (StackSettings(rate_limit_storage=None), {"write": "1/minute"}),
    ],
)
def test_read_write_with_rate_limiting_disabled_is_an_error(
    settings: StackSettings | None, overrides: dict[str, Any]
) -> None:
    """A18: read=/write= with rate limiting explicitly disabled is refused, naming the fix."""
    with pytest.raises(ConfigurationError) as info:
        _api(settings).build(auth=False, audit_sink=None, **overrides)
    message = str(info.value)
    assert "rate_limit_storage=None" in message and "rate_limit_storage=" in message
    assert "read=" in message and "write=" in message


async def test_no_audit_sink_warns_once(
    caplog: pytest.LogCaptureFixture, client_for: ClientFactory
) -> None:
    """A18: without audit_sink= build() warns once, naming audit_sink=None; None is quiet."""
    caplog.set_level(logging.WARNING)
    app = _api().build(auth=False, rate_limit_storage=None)
    async with client_for(app) as c:
        for _ in range(3):
            assert (await c.get("/api/v1/ping")).status_code == 200
    (record,) = _audit_warnings(caplog)
    assert "audit_sink=None" in record.message and "audit_sink=" in record.message
    caplog.clear()
    _api().build(auth=False, rate_limit_storage=None, audit_sink=None)
    _api(StackSettings(audit_sink=None)).build(auth=False)
    _api().build(auth=False, audit_sink="memory://")
    assert _audit_warnings(caplog) == []


def test_default_sentinel_is_distinct_from_none() -> None:
    """A18: the omitted value is a marker, so StackSettings tells "not written" from None."""
    s = StackSettings()
    assert s.rate_limit_storage is DEFAULT and s.audit_sink is DEFAULT
    assert s.read is DEFAULT and s.write is DEFAULT
    assert repr(DEFAULT) == "DEFAULT" and DEFAULT is not None


def test_default_stack_warns_about_workers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A18: the default in-process limiter keeps its multi-worker warning (N x the limit)."""
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    caplog.set_level(logging.WARNING)
    _api().build(auth=False, audit_sink=None)
    assert any(r.name == "extapi_kit.ratelimit" and "redis://" in r.message for r in caplog.records)
