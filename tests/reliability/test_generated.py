"""Generated input against the whole stack and the parsers no other suite fuzzes yet.

G1 is covered by schemathesis in tests/e2e, the route registry's "OpenAPI document == reachable
set" test (tests/routing/test_openapi.py) and the request generator below, which checks what
schemathesis' ``not_a_server_error``, ``ignored_auth`` and ``negative_data_rejection`` checks
would, with arbitrary extra headers: no 500, no 2xx without a valid key, no invalid body run.
Parsers already fuzzed elsewhere (skipped here): keys (tests/keys/test_format.py), XFF/Forwarded
(tests/middleware/test_clientip.py), Content-Length and sizes (test_body_limit_props.py),
Idempotency-Key (tests/idempotency/test_fingerprint.py), signatures
(tests/webhooks/test_signing.py), SSRF validator (tests/webhooks/test_ssrf.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from extapi_kit._units import MAX_DURATION, parse_duration
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.ratelimit.policy import parse_policy
from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.reliability.stack import cheap_service

pytestmark = pytest.mark.anyio

_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)


class Order(BaseModel):
    item: str
    qty: int


def _api(calls: list[Any]) -> ExternalAPI:
    api = ExternalAPI()

    @api.get("/orders/{id}", scopes=["orders:read"])
    async def show(req: HandlerRequest) -> dict[str, Any]:
        return {"id": req.path_params["id"]}

    @api.post("/orders", request_model=Order, scopes=["orders:write"], status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        calls.append(req.body)
        return {"ok": True}

    return api


_NON_FINITE = {"nan", "inf", "infinity"}

request = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
        "path": st.sampled_from(
            [
                "/api/v1/orders",
                "/api/v1/orders/1",
                "/api/v1/orders/%2e%2e",
                "/api/v2/orders",
                "/api/v1/openapi.json",
                "//api/v1/orders",
                "/api/v1/orders/1/",
                "/nope",
            ]
        ),
        "key": st.sampled_from(["none", "reader", "writer", "garbage"]),
        "garbage": _HEADER_TEXT,
        "body": st.one_of(
            st.none(),
            st.binary(max_size=64),
            st.builds(
                lambda i, q: json.dumps({"item": i, "qty": q}).encode(),
                st.text(max_size=8),
                st.one_of(st.integers(), st.text(max_size=4)),
            ),
        ),
        "ctype": st.sampled_from(["application/json", "text/plain", "", "application/json; x=1"]),
        "extra": st.dictionaries(
            st.sampled_from(
                [
                    "x-http-method-override",
                    "idempotency-key",
                    "x-forwarded-for",
                    "content-length",
                    "authorization",
                ]
            ),
            _HEADER_TEXT,
            max_size=3,
        ),
    }
)


@given(req=request)
async def test_generated_requests_never_500_nor_bypass_auth(
    req: dict[str, Any], tmp_path: Path
) -> None:
    """G1, G2: generated methods, paths, keys, bodies and headers against the built stack → never
    500; never 2xx on a protected route without a valid key or with a key lacking the scope;
    writes with invalid bodies never run; every 4xx/5xx is a problem document."""
    calls: list[Any] = []
    service = cheap_service("memory://")
    _, reader = await service.create("r", scopes=["orders:read"])
    _, writer = await service.create("w", scopes=["orders:read", "orders:write"])
    app = _api(calls).build(
        key_store=service,
        rate_limit_storage="memory://",
        idempotency_store="memory://",
        body_limit="1KiB",
    )
    headers = dict(req["extra"])
    keys = {"reader": reader, "writer": writer, "garbage": req["garbage"]}
    if req["key"] in keys:
        headers["x-api-key"] = keys[req["key"]]
    if req["ctype"]:
        headers["content-type"] = req["ctype"]
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        try:
            r = await c.request(req["method"], req["path"], headers=headers, content=req["body"])
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            return  # the client refused to send it: nothing reached the stack
    assert r.status_code < 500 or r.status_code == 503, r.text
    authed = req["key"] in ("reader", "writer")  # a garbage Authorization alone never counts
    if 200 <= r.status_code < 300 and not req["path"].endswith("openapi.json"):
        assert authed, (req, r.status_code)
        if req["method"] == "POST":
            assert req["key"] == "writer"
    if calls:
        assert isinstance(calls[-1], Order)
    if r.status_code >= 400 and req["method"] != "HEAD":
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    await service.aclose()


@given(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(sorted(_NON_FINITE)),
        st.from_regex(r"\A[0-9]{1,400}(\.[0-9]{1,3})?(ms|s|m|h|d|w)?\Z"),
    )
)
def test_duration_strings_raise_only_configuration_error(text: str) -> None:
    """G2, M7: any duration string parses to a finite number in [0, MAX_DURATION] or raises
    ConfigurationError (non-finite spellings included)."""
    try:
        assert 0 <= parse_duration(text) <= MAX_DURATION
    except ConfigurationError:
        pass


@pytest.mark.parametrize("text", ["nan", "NAN", "inf", "-nan", "infinity", float("nan")])
def test_non_finite_durations_are_refused(text: str | float) -> None:
    """G2: non-finite durations raise ConfigurationError instead of returning NaN or infinity."""
    with pytest.raises(ConfigurationError):
        parse_duration(text)


@given(st.one_of(st.text(max_size=40), st.lists(st.text(max_size=20), max_size=3)))
def test_rate_strings_raise_only_configuration_error(spec: str | list[str]) -> None:
    """G2: any rate-limit spec parses to at least one window or raises ConfigurationError."""
    try:
        assert parse_policy("p", spec).windows
    except ConfigurationError:
        pass
