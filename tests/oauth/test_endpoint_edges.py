"""Edges of ``TokenEndpoint`` served on its own (as the whole app) under uvicorn: request parsing,
client authentication corner cases, unknown paths and methods, store outages, and non-HTTP scopes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from extapi_kit._types import Message
from extapi_kit.keys.service import KeyService
from extapi_kit.oauth import SigningKeys, TokenEndpoint
from tests.keys.support import SpyHasher
from tests.oauth.issue_support import ISSUER, issuer, key_service, serving

pytestmark = pytest.mark.anyio

FORM = {"grant_type": "client_credentials"}
FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}
INVALID_CLIENT = b'{"error":"invalid_client","error_description":"Client authentication failed."}'
MAX_BODY = 256


@dataclass
class Served:
    http: httpx.AsyncClient
    endpoint: TokenEndpoint
    keys: KeyService
    hasher: SpyHasher
    key_id: str
    key: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    hasher = SpyHasher()
    keys = KeyService("memory://", hasher=hasher)
    record, key = await keys.create("partner", scopes=["projects:read"])
    endpoint = TokenEndpoint(issuer(keys), max_body=MAX_BODY)
    async with serving(endpoint) as base, httpx.AsyncClient(base_url=base) as http:
        yield Served(http, endpoint, keys, hasher, record.id, key)
    await keys.aclose()


def _basic_raw(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


async def _asgi(
    endpoint: TokenEndpoint, scope: dict[str, Any], inbox: list[Message]
) -> list[Message]:
    """Call the endpoint as an ASGI app with the given messages; return what it sent."""
    sent: list[Message] = []
    pending = list(inbox)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await endpoint(scope, receive, send)
    return sent


def _http_scope(path: str, method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.7", 1234),
        "server": ("127.0.0.1", 80),
    }


async def test_unknown_paths_and_wrong_methods_get_json_errors(served: Served) -> None:
    """Served as the whole app: an unknown path is a JSON 404, a write to the JWKS or the metadata
    is a 405 naming ``GET, HEAD``, and a GET of the token path is a no-store 405 naming POST."""
    r = await served.http.get("/oauth/authorize")
    assert r.status_code == 404 and r.json() == {"error": "not found"}
    for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
        for method in ("POST", "PUT", "DELETE"):
            r = await served.http.request(method, path, data=FORM)
            assert r.status_code == 405, (method, path)
            assert r.headers["allow"] == "GET, HEAD"
            assert r.json() == {"error": "method not allowed"}
    r = await served.http.put("/oauth/token", data=FORM)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.headers["cache-control"] == "no-store" and r.json()["error"] == "invalid_request"


async def test_head_of_jwks_and_metadata_has_headers_but_no_body(served: Served) -> None:
    """HEAD of the JWKS and the metadata answers 200 with the GET's type, cache policy and
    content-length, and an empty body."""
    for path, ctype in (
        ("/.well-known/jwks.json", "application/jwk-set+json"),
        ("/.well-known/oauth-authorization-server", "application/json"),
    ):
        got = await served.http.get(path)
        head = await served.http.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"] == ctype
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers["cache-control"] == "public, max-age=300"
    assert got.json()["issuer"] == ISSUER


async def test_repr_names_the_paths_and_no_secret() -> None:
    """O1: the endpoint's repr names its issuer and token path but no key material or operator
    secret."""
    keys = key_service()
    signing = SigningKeys(secret="q" * 40)
    endpoint = TokenEndpoint(issuer(keys, signing), token_path="/token")
    await signing.ensure()
    text = repr(endpoint)
    assert text.startswith("TokenEndpoint(issuer=") and "token_path='/token'" in text
    assert "q" * 40 not in text
    for key in await signing.keys():
        assert str(key._private["d"]) not in text
    assert endpoint.paths == (
        "/token",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    )
    await keys.aclose()


async def test_damaged_signing_key_file_is_503_with_retry_after(tmp_path: Path) -> None:
    """A damaged operator-managed JWKS file makes the JWKS and the token endpoint answer 503
    ``temporarily_unavailable`` with Retry-After and no-store (never a 500, never a token, no
    challenge); once the file is gone, new keys are made and a token is issued."""
    path = tmp_path / "signing.jwks"
    path.write_text("{not json", encoding="utf-8")
    keys = key_service()
    record, key = await keys.create("partner", scopes=["projects:read"])
    signing = SigningKeys(f"file://{path}", refresh_interval=0)
    endpoint = TokenEndpoint(issuer(keys, signing))
    async with serving(endpoint) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.get("/.well-known/jwks.json")
        assert r.status_code == 503 and r.json() == {"error": "temporarily_unavailable"}
        assert r.headers["retry-after"] == "5" and r.headers["cache-control"] == "no-store"
        for _ in range(3):
            r = await http.post("/oauth/token", data=FORM, auth=(record.id, key))
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "temporarily_unavailable"
            assert r.headers["retry-after"] == "5" and r.headers["cache-control"] == "no-store"
            assert "www-authenticate" not in r.headers and "access_token" not in r.text
        path.unlink()
        r = await http.post("/oauth/token", data=FORM, auth=(record.id, key))
        assert r.status_code == 200, r.text
        kids = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
        assert len(kids) == 2
    await keys.aclose()


async def test_query_string_without_credentials_is_ignored(served: Served) -> None:
    """A query string that carries no client credential does not stop a token request (only
    ``client_id``/``client_secret`` in the URI are refused, RFC 6749 §2.3.1)."""
    r = await served.http.post(
        "/oauth/token?trace=1&scope=admin", data=FORM, auth=(served.key_id, served.key)
    )
    assert r.status_code == 200, r.text
    # The scope in the query is not a parameter: the token has the key's own scope.
    assert r.json()["scope"] == "projects:read"
    r = await served.http.post(
        f"/oauth/token?client_id={served.key_id}", data=FORM, auth=(served.key_id, served.key)
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_body_read_in_chunks_and_bounded(served: Served) -> None:
    """A chunked body below ``max_body`` is read in full across chunks and issues a token; a body
    past ``max_body`` (in one piece or across chunks) is a 400 invalid_request, no token."""
    body = f"grant_type=client_credentials&client_secret={quote(served.key)}".encode()
    assert len(body) < MAX_BODY

    async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    r = await served.http.post("/oauth/token", content=chunks(body, 7), headers=FORM_TYPE)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"
    big = body + b"&pad=" + b"x" * MAX_BODY
    for content in (big, chunks(big, 50)):
        r = await served.http.post("/oauth/token", content=content, headers=FORM_TYPE)
        assert r.status_code == 400, r.text
        assert r.json() == {
            "error": "invalid_request",
            "error_description": "The request body is too large.",
        }
        assert r.headers["cache-control"] == "no-store"


async def test_non_ascii_body_and_empty_grant_type_are_invalid_requests(served: Served) -> None:
    """A body with non-ASCII bytes, and a blank or absent ``grant_type``, are 400 invalid_request
    JSON (RFC 6749 §5.2), never a 500 and never a token."""
    auth = (served.key_id, served.key)
    r = await served.http.post(
        "/oauth/token",
        content="grant_type=client_credentials&x=é".encode(),
        headers=FORM_TYPE,
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert r.json()["error_description"] == "The request body is not valid."
    for data in ({"grant_type": ""}, {"scope": "projects:read"}):
        r = await served.http.post("/oauth/token", data=data, auth=auth)
        assert r.status_code == 400 and r.json() == {
            "error": "invalid_request",
            "error_description": "The grant_type parameter is missing.",
        }


async def test_content_type_must_be_one_form_header(served: Served) -> None:
    """The form content type is accepted with parameters and in any case; two Content-Type
    headers are a 400 invalid_request."""
    auth = (served.key_id, served.key)
    body = b"grant_type=client_credentials"
    r = await served.http.post(
        "/oauth/token",
        content=body,
        headers={"content-type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8"},
        auth=auth,
    )
    assert r.status_code == 200, r.text
    r = await served.http.post(
        "/oauth/token",
        content=body,
        headers=[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_two_authorization_headers_are_an_invalid_request(served: Served) -> None:
    """Two Authorization headers (even both valid) are a 400 invalid_request, no token."""
    basic = _basic_raw(f"{served.key_id}:{served.key}".encode())
    r = await served.http.post(
        "/oauth/token",
        data=FORM,
        headers=[("authorization", basic), ("authorization", f"Bearer {served.key}")],
    )
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "Send one Authorization header.",
    }
    assert r.headers["cache-control"] == "no-store"


async def test_malformed_client_authentication_is_the_one_invalid_client(served: Served) -> None:
    """O3: an unknown auth scheme, Basic that is not base64 or not UTF-8, Basic without a colon,
    an empty secret (Basic or body), and a body client_id that differs from the Basic one each get
    the byte-identical invalid_client 401 with no-store and a Basic challenge."""
    good = f"{served.key_id}:{served.key}".encode()
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"authorization": f"Digest {served.key}"}, FORM),
        ({"authorization": "Basic %%%not-base64%%%"}, FORM),
        ({"authorization": _basic_raw(b"\xff\xfe:" + served.key.encode())}, FORM),
        ({"authorization": _basic_raw(served.key.encode())}, FORM),
        ({"authorization": _basic_raw(f"{served.key_id}:".encode())}, FORM),
        ({}, {**FORM, "client_id": served.key_id, "client_secret": ""}),
        ({"authorization": _basic_raw(good)}, {**FORM, "client_id": "someone-else"}),
    ]
    for headers, data in cases:
        r = await served.http.post("/oauth/token", data=data, headers=headers)
        assert r.status_code == 401, (headers, data, r.text)
        assert r.content == INVALID_CLIENT
        assert r.headers["www-authenticate"] == 'Basic realm="oauth", charset="UTF-8"'
        assert r.headers["cache-control"] == "no-store"


async def test_basic_halves_are_form_decoded_and_client_id_may_be_empty(served: Served) -> None:
    """RFC 6749 §2.3.1: the Basic user and password are form-urlencoded first, so a fully
    percent-encoded key authenticates; an empty Basic user means no client id, and a body
    client_id equal to the Basic one is accepted."""
    encoded = "".join(f"%{b:02X}" for b in served.key.encode())
    for credentials, data in (
        (f"{served.key_id}:{encoded}", FORM),
        (f":{served.key}", FORM),
        (f"{served.key_id}:{served.key}", {**FORM, "client_id": served.key_id}),
    ):
        r = await served.http.post(
            "/oauth/token", data=data, headers={"authorization": _basic_raw(credentials.encode())}
        )
        assert r.status_code == 200, (credentials, r.text)
        assert r.json()["scope"] == "projects:read"


async def test_client_disconnect_before_the_body_issues_nothing(served: Served) -> None:
    """A client that disconnects before sending its body gets no token: the empty form is a 400
    invalid_request (no grant_type), and the key is never verified."""
    headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"authorization", _basic_raw(f"{served.key_id}:{served.key}".encode()).encode()),
    ]
    sent = await _asgi(
        served.endpoint, _http_scope("/oauth/token", "POST", headers), [{"type": "http.disconnect"}]
    )
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "invalid_request"
    assert served.hasher.verify_calls == 0


async def test_websocket_is_closed_and_lifespan_is_ignored(served: Served) -> None:
    """A websocket to the endpoint is closed with 1008 (policy violation) before any accept; a
    lifespan scope gets no message at all."""
    ws_scope = {**_http_scope("/oauth/token", "GET", []), "type": "websocket"}
    assert await _asgi(served.endpoint, ws_scope, [{"type": "websocket.connect"}]) == [
        {"type": "websocket.close", "code": 1008}
    ]
    assert await _asgi(served.endpoint, {"type": "lifespan"}, [{"type": "lifespan.startup"}]) == []
