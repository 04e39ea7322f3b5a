"""Registry router edges: path models (422 with a path loc) and a client leaving mid-body (M1)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from extapi_kit._types import Message, Scope
from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.routing.conftest import ClientFactory

pytestmark = pytest.mark.anyio


class ItemPath(BaseModel):
    """Path parameters of an item."""

    id: int = Field(ge=1)


class NewItem(BaseModel):
    """Body of an item creation."""

    name: str


def _api(calls: list[Any]) -> ExternalAPI:
    api = ExternalAPI()

    @api.get("/items/{id}", path_model=ItemPath, public=True)
    async def get_item(req: HandlerRequest) -> dict[str, Any]:
        calls.append(dict(req.path_params))
        return {"id": req.path_params["id"]}

    @api.post("/items", request_model=NewItem, public=True)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        calls.append(req.body)
        return {"ok": True}

    return api


async def test_path_model_validates_and_types_path_values(client_for: ClientFactory) -> None:
    """A path_model turns "5" into 5 for the handler; an out-of-range id is a 422 at path.id."""
    calls: list[Any] = []
    async with client_for(_api(calls)) as c:
        ok = await c.get("/api/v1/items/5")
        bad = await c.get("/api/v1/items/0")
    assert ok.status_code == 200 and ok.json() == {"id": 5}
    assert calls == [{"id": 5}]
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["path", "id"]


async def test_client_leaving_mid_body_runs_nothing() -> None:
    """M1: a client that disconnects before its body is complete never reaches the handler."""
    calls: list[Any] = []
    api = _api(calls)
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/items",
        "raw_path": b"/api/v1/items",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("203.0.113.7", 1),
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"name": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await api(scope, receive, send)
    assert calls == [] and sent == []
