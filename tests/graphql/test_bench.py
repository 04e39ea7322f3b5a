"""The GraphQL benchmark measures what it names (figures belong to ``nox -s bench``)."""

from __future__ import annotations

import pytest
from bench import graphql as bench_graphql


def test_bench_rows_measure_the_named_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both stacks answer 200 through the full stack, and the analysed query has 50 fields
    (the suite raises otherwise); four rows come back with figures."""
    monkeypatch.setattr(bench_graphql, "BATCHES", 1)
    monkeypatch.setattr(bench_graphql, "PER_BATCH", 2)
    monkeypatch.setattr(bench_graphql, "_per_call_us", lambda fn, n=0: (fn(), (1.0, 1.0))[1])
    rows = bench_graphql.run()
    assert [r["case"].split(" ")[0] for r in rows] == ["REST", "GraphQL", "cost", "parse"]
    assert all(r["median_us"] > 0 for r in rows)
    assert rows[2]["target_us"] == 100
