"""Invariants of the per-minute activity buckets computed from audit records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.admin.audit_routes import activity_buckets
from extapi_kit.audit.record import AuditRecord

START = 1_800_000_000.0
MINUTES = 60

offsets = st.lists(
    st.tuples(
        st.floats(min_value=-600, max_value=MINUTES * 60 + 600, allow_nan=False),
        st.sampled_from([(200, None), (429, "quota-exceeded"), (403, "forbidden"), (500, None)]),
    ),
    max_size=200,
)


@given(offsets)
def test_every_record_in_the_window_is_counted_once_in_its_minute(
    rows: list[tuple[float, tuple[int, str | None]]],
) -> None:
    """Bucket totals equal the records inside the window; rejections never exceed requests."""
    records = [
        AuditRecord(
            timestamp_us=int((START + off) * 1_000_000),
            request_id=str(i),
            method="GET",
            path="/x",
            status=status,
            rejection=rejection,
        )
        for i, (off, (status, rejection)) in enumerate(rows)
    ]
    buckets = activity_buckets(records, start=START, minutes=MINUTES)
    inside = [r for r in records if 0 <= r.timestamp_us - START * 1_000_000 < MINUTES * 60e6]
    assert len(buckets) == MINUTES
    assert sum(b.requests for b in buckets) == len(inside)
    assert sum(b.rate_limited for b in buckets) == sum(r.status == 429 for r in inside)
    for i, b in enumerate(buckets):
        assert b.rate_limited <= b.rejections <= b.requests
        mine = [r for r in inside if int((r.timestamp_us / 1e6 - START) // 60) == i]
        assert b.requests == len(mine)
