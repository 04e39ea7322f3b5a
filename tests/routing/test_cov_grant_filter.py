"""Response-side grant filtering (Z3 defence in depth): lists, envelopes, odd answers, caps."""

from __future__ import annotations

import json
import logging

import pytest

from extapi_kit._types import Message, Scope
from extapi_kit.context import get_context
from extapi_kit.routing import _buffered
from extapi_kit.routing.grant_filter import (
    GrantFilteredResponse,
    filter_document,
    uniform_not_found,
)

pytestmark = pytest.mark.anyio

RULES = [("project_id", frozenset({"1", "2"}))]


def _scope() -> Scope:
    return {"type": "http", "method": "GET", "path": "/api/v1/assets", "headers": []}


class Recorder:
    """An ASGI send that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0].get("headers", []))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def _answer(
    rules: list[tuple[str, frozenset[str]]],
    status: int,
    chunks: list[bytes],
    scope: Scope | None = None,
) -> Recorder:
    out = Recorder()
    scope = scope or _scope()
    resp = GrantFilteredResponse(rules, scope, out)
    await resp.send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"999")],
        }
    )
    for i, chunk in enumerate(chunks):
        more = i < len(chunks) - 1
        await resp.send({"type": "http.response.body", "body": chunk, "more_body": more})
    return out


def test_top_level_list_drops_foreign_and_non_object_items() -> None:
    """Z3: a bare JSON list keeps only granted objects; strings, nulls and foreign ids go."""
    doc = [
        {"project_id": 1},
        {"project_id": 3},
        "1",
        None,
        {"name": "no field"},
        {"project_id": "2"},
    ]
    kept, visible, changed = filter_document(doc, RULES)
    assert kept == [{"project_id": 1}, {"project_id": "2"}]
    assert visible and changed


def test_list_with_only_granted_items_is_reported_unchanged() -> None:
    """A list that is already clean is not re-serialised (changed is False)."""
    doc = [{"project_id": 1}, {"project_id": 2}]
    assert filter_document(doc, RULES) == (doc, True, False)


def test_envelope_items_key_is_filtered_too() -> None:
    """Z3: an ``items`` envelope loses foreign items; the other members are kept as they are."""
    doc = {"items": [{"project_id": 9}, {"project_id": 1}], "next": "c1"}
    kept, visible, changed = filter_document(doc, RULES)
    assert kept == {"items": [{"project_id": 1}], "next": "c1"} and visible and changed


def test_scalars_and_unrelated_objects_pass_untouched() -> None:
    """A scalar or an object naming no filtered field is neither hidden nor changed."""
    assert filter_document(42, RULES) == (42, True, False)
    assert filter_document({"status": "ok"}, RULES) == ({"status": "ok"}, True, False)


async def test_single_foreign_object_becomes_uniform_404() -> None:
    """Z3: one object of another tenant is answered as ``not-found``, like a missing id."""
    out = await _answer(RULES, 200, [b'{"id": "a", ', b'"project_id": 7}'])
    assert out.status == 404
    assert json.loads(out.body)["type"].endswith("/not-found")
    assert b"project_id" not in out.body


async def test_chunked_list_is_filtered_and_content_length_recomputed() -> None:
    """A list streamed in chunks is buffered, filtered, and sent with a correct content-length."""
    body = json.dumps([{"project_id": 1, "n": "é"}, {"project_id": 5}]).encode()
    out = await _answer(RULES, 200, [body[:10], body[10:]])
    assert out.status == 200
    assert json.loads(out.body) == [{"project_id": 1, "n": "é"}]
    assert out.headers[b"content-length"] == str(len(out.body)).encode()
    assert [k for k, _ in out.messages[0]["headers"]].count(b"content-length") == 1


async def test_empty_2xx_body_is_passed_through() -> None:
    """A 2xx answer with no body (HEAD of a handler target) is forwarded as is: nothing to leak."""
    out = await _answer(RULES, 200, [b""])
    assert out.status == 200 and out.body == b""


async def test_non_json_answer_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    """A filtered route answering non-JSON is refused with a 500, never sent unfiltered."""
    scope = _scope()
    with caplog.at_level(logging.ERROR, logger="extapi_kit.routing"):
        out = await _answer(RULES, 200, [b"project 7: secret plans"], scope)
    assert out.status == 500
    assert b"secret" not in out.body
    assert get_context(scope).rejection == "internal-error"
    assert "fail closed" in caplog.text


async def test_oversized_answer_is_a_502(monkeypatch: pytest.MonkeyPatch) -> None:
    """W12: an answer past the buffer cap is a 502, and no later chunk follows the problem."""
    monkeypatch.setattr(_buffered, "MAX_BUFFERED", 64)
    out = await _answer(RULES, 200, [b"[" + b'{"project_id":1},' * 10, b"{}]"])
    assert out.status == 502
    assert len(out.messages) == 2  # the problem only; the rest of the body is not forwarded


async def test_non_2xx_and_204_answers_are_not_buffered() -> None:
    """Errors and 204s stream straight through (they carry no list of objects to filter)."""
    for status in (204, 400):
        out = await _answer(RULES, status, [b'{"project_id": 7}'])
        assert out.status == status and out.body == b'{"project_id": 7}'


async def test_uniform_not_found_swallows_the_targets_own_404_body() -> None:
    """Z3: a target's own 404 body is replaced by the standard problem, byte for byte."""
    out = Recorder()
    send = uniform_not_found(out, _scope())
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"no project 7 in tenant B"})
    standard = Recorder()
    await uniform_not_found(standard, _scope())(
        {"type": "http.response.start", "status": 404, "headers": []}
    )
    assert out.status == 404 and b"tenant" not in out.body
    assert out.body == standard.body
    ok = Recorder()
    send = uniform_not_found(ok, _scope())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})
    assert ok.status == 200 and ok.body == b"{}"
