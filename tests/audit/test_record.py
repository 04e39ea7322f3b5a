"""AuditRecord serialisation and query-string redaction."""

from __future__ import annotations

import json
from urllib.parse import quote, unquote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.audit import AuditRecord, QueryRedactor
from extapi_kit.audit.record import REDACTED, new_record_id
from extapi_kit.keys.format import contains_key, generate_key
from extapi_kit.middleware.api_key import ApiKeyMiddleware

SENSITIVE = [
    "api_key",
    "API-Key",
    "apikey",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "password",
    "client_secret",
    "signature",
    "X-Api-Key",
]
SAFE = ["page", "limit", "q", "sort", "monkey_name", "idx"]
VALUE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6, max_size=30)


@given(pairs=st.lists(st.tuples(st.sampled_from(SENSITIVE + SAFE), VALUE), min_size=1, max_size=8))
def test_sensitive_query_values_never_survive_redaction(pairs: list[tuple[str, str]]) -> None:
    """A10: for any query string, sensitive names keep no value; other pairs are kept as sent."""
    qs = urlencode(pairs)
    out = QueryRedactor().redact(qs.encode())
    parts = out.split("&")
    assert len(parts) == len(pairs)
    for (name, value), part in zip(pairs, parts, strict=True):
        encoded = urlencode([(name, value)])
        if name in SENSITIVE:
            assert part.endswith("=" + REDACTED)
            assert encoded.split("=", 1)[1] not in part
        else:
            assert part == encoded


def test_configured_names_are_redacted_too() -> None:
    """Names passed as redact_query are redacted in addition to the defaults."""
    redactor = QueryRedactor(["session"])
    assert redactor.redact(b"session=abc&Session-=x&page=1") == (
        f"session={REDACTED}&Session-={REDACTED}&page=1"
    )
    assert redactor.redact(b"") == ""


RECORDS = st.builds(
    AuditRecord,
    timestamp_us=st.integers(0, 4_000_000_000_000_000),
    request_id=st.text(max_size=10),
    method=st.sampled_from(["GET", "POST"]),
    path=st.text(max_size=20),
    route=st.none() | st.text(max_size=20),
    status=st.integers(100, 599),
    latency_ms=st.floats(0, 1e6, allow_nan=False),
    key_id=st.none() | st.text(max_size=8),
    scopes=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    rate_limit=st.none()
    | st.fixed_dictionaries({"policy": st.text(max_size=5), "remaining": st.integers()}),
    resource_ids=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    error=st.booleans(),
    client_disconnected=st.booleans(),
    extra=st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    id=st.just("") | st.builds(new_record_id),
)


@given(rec=RECORDS)
def test_record_round_trips_through_json(rec: AuditRecord) -> None:
    """to_json/to_dict -> from_dict gives the same record; timestamp is ISO 8601 UTC with µs."""
    assert AuditRecord.from_dict(json.loads(rec.to_json())) == rec
    doc = rec.to_dict()
    assert doc["timestamp"].endswith("Z") and len(doc["timestamp"].split(".")[1]) == 7
    del doc["timestamp_us"]
    assert AuditRecord.from_dict(doc) == rec
    assert rec.timestamp.tzinfo is not None


KEY = generate_key(prefix="xk", env="live")
KEY_FORMS = st.sampled_from(
    [KEY, f"Bearer {KEY}", f" {KEY} ", f"{KEY};", f"foo_{KEY}", quote(KEY), quote(quote(KEY))]
)
PART = st.one_of(
    st.tuples(st.sampled_from([*SAFE, "auth", "x", "authorization"]), KEY_FORMS).map(
        lambda nv: f"{nv[0]}={quote(nv[1], safe=' ;%')}"
    ),
    st.tuples(st.sampled_from(SAFE), VALUE).map(lambda nv: urlencode([nv])),
    KEY_FORMS.map(lambda k: quote(k, safe="%")),
)


@given(st.lists(PART, min_size=1, max_size=6))
def test_refusal_and_redaction_agree_on_query_keys(parts: list[str]) -> None:
    """A17: the middleware refuses a query exactly when it holds a key, and the audit record of
    any query keeps no key, whatever the parameter name, wrapping or encoding."""
    qs = "&".join(parts)
    middleware = ApiKeyMiddleware(_app, store="memory://")
    refused = middleware._key_in_query({"query_string": qs.encode("latin-1")})
    assert refused == any(KEY in unquote_plus(unquote_plus(unquote_plus(p))) for p in parts)
    redacted = QueryRedactor().redact(qs.encode("latin-1"))
    assert not contains_key(redacted) and KEY[-49:] not in redacted


async def _app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise AssertionError("never called")
