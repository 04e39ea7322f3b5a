"""Internal-app targets: response-model failures, size cap, identity headers, path templates."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.context import Principal
from extapi_kit.routing import ExternalAPI, _buffered, targets
from extapi_kit.routing.targets import identity_headers, render_path, replay_receive

pytestmark = pytest.mark.anyio


class ProjectOut(BaseModel):
    """The public shape of a project."""

    id: int
    name: str


class StrictSend:
    """Records messages and, like uvicorn, refuses any message after the response completed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.complete = False

    async def __call__(self, message: Message) -> None:
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message {message['type']!r} after completion")
        self.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def _internal(chunks: list[bytes], status: int = 200) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, chunk in enumerate(chunks):
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1}
            )

    return app


async def _call(api: ExternalAPI, path: str, method: str = "GET") -> StrictSend:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "client": ("203.0.113.7", 1234),
        "server": ("t", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    out = StrictSend()
    await api(scope, receive, out)
    return out


def _api(chunks: list[bytes], status: int = 200) -> ExternalAPI:
    api = ExternalAPI()
    api.expose(
        "GET",
        "/projects/{id}",
        to=_internal(chunks, status),
        path="/internal/projects/{id}",
        response_model=ProjectOut,
        public=True,
    )
    return api


async def test_streamed_internal_answer_is_validated_whole() -> None:
    """OWASP API3: a chunked internal answer is buffered and re-serialised through the model."""
    out = await _call(
        _api([b'{"id": 7, "name"', b': "p", "internal_notes": "x"}']), "/api/v1/projects/7"
    )
    assert out.status == 200
    assert json.loads(out.body) == {"id": 7, "name": "p"}
    assert dict(out.messages[0]["headers"])[b"content-length"] == str(len(out.body)).encode()


async def test_internal_answer_not_matching_model_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 2xx that fails the response model is a generic 500: the unfiltered body never leaves."""
    with caplog.at_level(logging.ERROR, logger="extapi_kit.routing"):
        out = await _call(_api([b'{"internal_notes": "secret"}']), "/api/v1/projects/7")
    assert out.status == 500
    assert b"secret" not in out.body
    assert "does not match response_model" in caplog.text


async def test_oversized_internal_answer_is_a_502_and_the_rest_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """W12: an answer past the filter cap is a 502; later chunks are not sent after it."""
    monkeypatch.setattr(_buffered, "MAX_BUFFERED", 32)
    chunks = [b'{"id": 7, "name": "', b"x" * 40, b"tail-secret", b'"}']
    out = await _call(_api(chunks), "/api/v1/projects/7")
    assert out.status == 502
    assert b"tail-secret" not in out.body
    assert out.complete and len(out.messages) == 2


def test_identity_headers_for_public_and_keyed_calls() -> None:
    """A11: trusted identity headers carry the verified key, never anything client-sent."""
    assert identity_headers(None, None) == []
    assert identity_headers(None, "198.51.100.4") == [(b"x-forwarded-for", b"198.51.100.4")]
    p = Principal(
        key_id="k1",
        owner="tenant-a",
        scopes=frozenset({"b:read", "a:write"}),
        grants={"projects": frozenset({"9", "1"})},
    )
    got = dict(identity_headers(p, None))
    assert got[b"x-api-key-id"] == b"k1"
    assert got[b"x-owner-id"] == got[b"x-user-id"] == b"tenant-a"
    assert got[b"x-scopes"] == b"a:write b:read"
    assert json.loads(got[b"x-resource-grants"]) == {"projects": ["1", "9"]}
    assert b"x-forwarded-for" not in got


def test_principals_sharing_grants_get_the_same_grants_header() -> None:
    """Two principals with one grants mapping (a rotated key) both get the right header."""
    grants = {"projects": frozenset({"3"})}
    a = dict(identity_headers(Principal(key_id="old", grants=grants), None))
    b = dict(identity_headers(Principal(key_id="new", grants=grants), None))
    assert a[b"x-resource-grants"] == b[b"x-resource-grants"] == b'{"projects":["3"]}'
    assert (a[b"x-api-key-id"], b[b"x-api-key-id"]) == (b"old", b"new")


def test_header_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """L7: many distinct principals never grow the per-principal header caches past the cap."""
    monkeypatch.setattr(targets, "_PRINCIPAL_HEADERS_MAX", 8)
    monkeypatch.setattr(targets, "_GRANTS_HEADERS_MAX", 8)
    monkeypatch.setattr(targets, "_PRINCIPAL_HEADERS", {})
    monkeypatch.setattr(targets, "_GRANTS_HEADERS", {})
    keep = [Principal(key_id=f"k{i}", grants={"p": frozenset({str(i)})}) for i in range(30)]
    for p in keep:
        got = dict(identity_headers(p, None))
        assert got[b"x-api-key-id"] == p.key_id.encode()
        assert (
            got[b"x-resource-grants"]
            == json.dumps({"p": sorted(p.grants["p"])}).replace(" ", "").encode()
        )
    assert len(targets._PRINCIPAL_HEADERS) <= 8 and len(targets._GRANTS_HEADERS) <= 8


def test_render_path_with_leading_parameter_and_unsafe_values() -> None:
    """A template may start with a parameter; non-alphanumeric values are percent-encoded."""
    path, raw = render_path("{tenant}/projects/{id:int}", {"tenant": "a b", "id": "7"})
    assert path == "a b/projects/7"
    assert raw == b"a%20b/projects/7"


async def test_replayed_body_is_followed_by_the_clients_disconnect() -> None:
    """M1: after the validated body, the internal app sees the client's real receive events."""

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    replay = replay_receive(b'{"a":1}', receive)
    assert await replay() == {"type": "http.request", "body": b'{"a":1}', "more_body": False}
    assert await replay() == {"type": "http.disconnect"}
