"""A schemathesis-like check (schemathesis is not installed): random requests, documented answers.

G1 (partial): for random methods, paths built from the document's templates with random parameter
values, random query strings and random bodies, the registry never answers 5xx and only answers
with a status the OpenAPI document lists for that operation, or 404/405 for what it does not list.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.routing.conftest import raw_call

pytestmark = pytest.mark.anyio


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    qty: int = Field(ge=0, le=1000)


class ItemOut(BaseModel):
    id: int
    name: str


class ListQuery(BaseModel):
    limit: int = Field(10, ge=1, le=50)
    tag: list[str] = []


def _api() -> ExternalAPI:
    api = ExternalAPI()

    @api.get("/items/{id:int}", response_model=ItemOut, public=True)
    async def get_item(req: HandlerRequest) -> dict[str, Any]:
        return {"id": int(req.path_params["id"]), "name": "n", "secret": 1}

    @api.post("/items", request_model=ItemIn, response_model=ItemOut, status_code=201, public=True)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"id": 1, "name": req.body.name}

    @api.get("/items", query_model=ListQuery, public=True)
    async def list_items(req: HandlerRequest) -> dict[str, Any]:
        return {"data": [], "limit": req.query.limit}

    return api


API = _api()
DOC = API.openapi("v1")
TEMPLATES = list(DOC["paths"])
text = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12)


def _fill(template: str, value: str) -> str:
    filler = value.replace("/", "").replace("?", "") or "x"
    return re.sub(r"\{[^}]+\}", lambda _: filler, template)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    template=st.sampled_from(TEMPLATES),
    value=st.one_of(st.integers(-5, 10**6).map(str), text),
    query=st.lists(st.tuples(st.sampled_from(["limit", "tag", "x"]), text), max_size=3),
    body=st.one_of(
        st.none(),
        st.builds(lambda n, q: {"name": n, "qty": q}, text, st.integers(-10, 2000)),
        st.binary(max_size=20),
    ),
)
async def test_random_requests_get_documented_answers(
    method: str, template: str, value: str, query: list[tuple[str, str]], body: Any
) -> None:
    """G1: no 5xx; every status is documented for the operation, or 404/405 when undocumented."""

    path = quote(_fill(template, value), safe="/")
    target = path + ("?" + urlencode(query) if query else "")
    headers = [(b"content-type", b"application/json")]
    payload = b""
    if isinstance(body, dict):
        payload = json.dumps(body).encode()
    elif isinstance(body, bytes):
        payload = body
    status, _, _ = await _call(method, target, headers, payload)
    assert status < 500
    op = DOC["paths"][template].get("get" if method == "HEAD" else method.lower())
    if op is None:
        assert status in (404, 405)
    else:
        assert str(status) in op["responses"] or status == 404, (method, target, status)


async def _call(
    method: str, target: str, headers: list[tuple[bytes, bytes]], payload: bytes
) -> tuple[int, Any, bytes]:
    if not payload:
        return await raw_call(API, method, target, headers)
    path, _, qs = target.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": qs.encode(),
        "headers": headers,
        "client": ("203.0.113.7", 1),
    }
    sent: list[Any] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await API(scope, receive, send)
    return sent[0]["status"], None, b""
