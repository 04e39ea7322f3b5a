"""IdempotencyMiddleware mounted in Starlette and FastAPI apps."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extapi_kit.middleware.idempotency import IdempotencyMiddleware

pytestmark = pytest.mark.anyio


async def test_starlette_app_replays_json() -> None:
    """I1 in a Starlette app: the handler runs once and the retry replays its JSON body."""
    calls: list[dict[str, object]] = []

    async def create(request: Request) -> JSONResponse:
        calls.append(await request.json())
        return JSONResponse({"id": len(calls)}, status_code=201)

    app = Starlette(
        routes=[Route("/orders", create, methods=["POST"])],
        middleware=[Middleware(IdempotencyMiddleware, required=True)],
    )
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        h = {"idempotency-key": '"k-1"'}
        first = await c.post("/orders", json={"sku": "a"}, headers=h)
        second = await c.post("/orders", json={"sku": "a"}, headers=h)
        missing = await c.post("/orders", json={"sku": "a"})
    assert first.json() == second.json() == {"id": 1}
    assert second.headers["idempotent-replayed"] == "true"
    assert missing.status_code == 400 and len(calls) == 1


async def test_fastapi_app() -> None:
    """I1 in FastAPI: one execution, replayed status and body; another payload is 422 (I3)."""
    calls: list[int] = []
    api = FastAPI()

    @api.post("/pay", status_code=202)
    async def pay(body: dict[str, int]) -> dict[str, int]:
        calls.append(body["amount"])
        return {"accepted": body["amount"]}

    api.add_middleware(IdempotencyMiddleware, store="memory://")
    transport = httpx.ASGITransport(api, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        h = {"idempotency-key": "pay-1"}
        first = await c.post("/pay", json={"amount": 5}, headers=h)
        second = await c.post("/pay", json={"amount": 5}, headers=h)
        other = await c.post("/pay", json={"amount": 6}, headers=h)
    assert first.status_code == second.status_code == 202
    assert second.json() == {"accepted": 5} and calls == [5]
    assert other.status_code == 422
