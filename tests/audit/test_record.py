"""AuditRecord serialisation and query-string redaction."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.audit import AuditRecord, QueryRedactor
from extapi_kit.audit.record import REDACTED, new_record_id

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
