"""The studio example with credits: a partner given a balance spends it over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from argon2 import profiles

from extapi_kit.credits import CreditLedger
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from tests.support.serving import loopback_socket


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """The studio under uvicorn; yields (base URL, partner key, credits store URL)."""
    data = tmp_path / "data"
    app = create_app(data)
    urls = store_urls(data)

    async def make_partner() -> str:
        svc = KeyService(urls["keys"], hasher=Argon2Hasher(profiles.CHEAPEST))
        ledger = CreditLedger(urls["usage"])
        try:
            record, key = await svc.create("partner", owner="acme", scopes=["projects:read"])
            await ledger.set(2, key_id=record.id, actor="test", reason="prepaid pack")
        finally:
            await ledger.aclose()
            await svc.aclose()
        return key

    key = asyncio.run(make_partner())
    sock = loopback_socket()  # bound before the server starts: no port race
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key, urls["usage"]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def test_a_partner_with_two_credits_gets_two_answers(studio: tuple[str, str, str]) -> None:
    """The studio spends a partner's prepaid credits: 200, 200, then 402 credits-exhausted."""
    url, key, _ = studio
    with httpx.Client(base_url=url, headers={"X-API-Key": key}) as client:
        answers = [client.get("/api/v1/projects", params={"limit": 1}) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 402]
    assert [r.headers.get("credits-remaining") for r in answers] == ["1", "0", "0"]
    assert answers[2].json()["type"] == "https://extapi-kit.dev/problems/credits-exhausted"
