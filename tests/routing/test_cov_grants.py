"""Grant checks at their edges (Z3): id spellings, validated values, defaults, sync lookups."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from extapi_kit._types import Message, Scope
from extapi_kit.context import Principal, RequestContext
from extapi_kit.routing import ExternalAPI, HandlerRequest
from extapi_kit.routing.grants import (
    check_body,
    check_lookup,
    check_request,
    compile_grants,
    value_in,
)

pytestmark = pytest.mark.anyio

IDS = frozenset({"1", "2", "07"})


def _ctx(**grants: frozenset[str]) -> RequestContext:
    return RequestContext(principal=Principal(key_id="k", grants=grants))


def test_value_in_compares_as_strings_and_refuses_non_ids() -> None:
    """Z3: lists need every element granted; None, booleans, objects are never granted."""
    assert value_in([1, "2"], IDS) and value_in((1,), IDS)
    assert not value_in([1, 3], IDS)
    assert not value_in(None, IDS)
    assert not value_in(True, frozenset({"True", "1"}))
    assert not value_in({"id": "1"}, IDS)
    assert value_in(1.5, frozenset({"1.5"}))
    assert not value_in(1.0, IDS)  # "1.0" is a different id from "1"


def test_raw_and_validated_path_values_must_both_be_granted() -> None:
    """Z3: a granted raw spelling ("07") does not unlock the different id a handler sees (7)."""
    spec = compile_grants(["id"], {"id": "projects"}, None, None)
    assert spec is not None
    ctx = _ctx(projects=IDS)
    assert not check_request(spec, ctx, {"id": "07"}, {"id": 7}, b"", None)
    assert ctx.resource_ids == {"projects": "07"}
    assert check_request(spec, _ctx(projects=IDS), {"id": "2"}, {"id": 2}, b"", None)


class Filters(BaseModel):
    """A query model with a defaulted resource parameter."""

    project_id: str = "5"
    q: str | None = None


def test_defaulted_query_value_the_handler_sees_is_checked() -> None:
    """Z3: a query default that is not granted denies the call even when the client sent none."""
    spec = compile_grants([], {"project_id": "projects"}, None, None)
    assert spec is not None
    assert not check_request(spec, _ctx(projects=IDS), {}, {}, b"q=x", Filters(q="x"))
    granted = Filters(project_id="2", q="x")
    assert check_request(spec, _ctx(projects=IDS), {}, {}, b"q=x", granted)


async def test_sync_lookup_returning_an_awaitable_is_awaited() -> None:
    """A sync lookup that hands back a coroutine is awaited; its owner decides the grant."""

    async def owners(values: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"projects": "9" if values["id"] == "x9" else "1"}

    def lookup(values: Mapping[str, Any]) -> Any:
        return owners(values)

    spec = compile_grants(["id"], None, None, None, lookup)
    assert spec is not None
    ctx = _ctx(projects=IDS)
    assert not await check_lookup(spec, ctx, {"id": "x9"})
    assert ctx.resource_ids == {"projects": "9"}
    assert await check_lookup(spec, _ctx(projects=IDS), {"id": "x1"})


def test_non_object_body_has_no_fields_to_check() -> None:
    """A JSON array body names no declared field: nothing is recorded and the check passes."""
    spec = compile_grants([], None, {"project_id": "projects"}, None)
    assert spec is not None
    ctx = _ctx(projects=IDS)
    assert check_body(spec, ctx, TypeAdapter(list[int]), [9, 10])
    assert ctx.resource_ids == {}


class Out(BaseModel):
    """A response model."""

    id: int


async def test_handler_header_lookup_and_bad_result(caplog: pytest.LogCaptureFixture) -> None:
    """A missing header reads as None; a result that fails response_model is a generic 500."""
    api = ExternalAPI()
    seen: list[str | None] = []

    @api.get("/thing", response_model=Out, public=True)
    async def thing(req: HandlerRequest) -> Any:
        seen.append(req.header("X-Missing"))
        seen.append(req.header("Host"))
        return {"id": "not-a-number", "secret": "s3"}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/thing",
        "raw_path": b"/api/v1/thing",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "client": ("203.0.113.7", 1),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.ERROR, logger="extapi_kit.routing"):
        await api(scope, receive, send)
    assert "does not match response_model" in caplog.text
    assert seen == [None, "t"]
    assert sent[0]["status"] == 500
    assert b"s3" not in sent[1]["body"]
