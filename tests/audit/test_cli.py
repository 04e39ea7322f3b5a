"""``extapi-kit audit query`` and ``audit prune`` against a real SQLite audit store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from extapi_kit.audit import AuditRecord
from extapi_kit.audit.record import new_record_id
from extapi_kit.audit.sink_sqlite import SQLiteSink
from extapi_kit.cli import main
from extapi_kit.cli.audit import parse_time


def _seed(path: Path) -> str:
    now = int(time.time() * 1_000_000)
    records = [
        AuditRecord(
            timestamp_us=now - age_h * 3_600_000_000,
            request_id=f"r{age_h}",
            method="GET" if age_h % 2 else "POST",
            path="/items/1",
            route="/items/{id}" if age_h < 3 else "/users",
            status=200 if age_h % 3 else 429,
            key_id="key-a" if age_h < 4 else "key-b",
            client_ip="203.0.113.7",
            id=new_record_id(),
        )
        for age_h in range(6)
    ]
    sink = SQLiteSink(str(path))

    async def write() -> None:
        await sink.write_batch(records)
        await sink.aclose()

    asyncio.run(write())
    return f"sqlite:///{path}"


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, object]:
    assert main(argv) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_query_filters_by_key_route_method_status_and_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--key/--route/--method/--status/--since filter; --json prints records newest first."""
    url = _seed(tmp_path / "a.db")
    base = ["audit", "query", "--store", url, "--json"]
    doc = _json(capsys, [*base, "--key", "key-a"])
    assert [r["request_id"] for r in doc["records"]] == ["r0", "r1", "r2", "r3"]  # type: ignore[attr-defined]
    doc = _json(capsys, [*base, "--route", "/users", "--method", "post"])
    assert [r["request_id"] for r in doc["records"]] == ["r4"]  # type: ignore[attr-defined]
    doc = _json(capsys, [*base, "--status", "429", "--since", "4h30m"])
    assert [r["request_id"] for r in doc["records"]] == ["r0", "r3"]  # type: ignore[attr-defined]
    doc = _json(capsys, [*base, "--limit", "2"])
    assert doc["next_cursor"]
    doc2 = _json(capsys, [*base, "--limit", "10", "--cursor", str(doc["next_cursor"])])
    assert [r["request_id"] for r in doc2["records"]] == ["r2", "r3", "r4", "r5"]  # type: ignore[attr-defined]


def test_table_output_and_store_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --json a table is printed; the store comes from EXTAPI_KIT_AUDIT_STORE."""
    monkeypatch.setenv("EXTAPI_KIT_AUDIT_STORE", _seed(tmp_path / "b.db"))
    assert main(["audit", "query", "--key", "key-b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "time",
        "status",
        "method",
        "route",
        "key",
        "client_ip",
        "ms",
        "rejection",
    ]
    assert len(lines) == 3 and all("key-b" in line for line in lines[1:])


def test_prune_removes_old_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit prune --older-than 150m` deletes the records older than that age."""
    url = _seed(tmp_path / "c.db")
    assert _json(capsys, ["audit", "prune", "--store", url, "--older-than", "150m", "--json"]) == {
        "deleted": 3
    }
    doc = _json(capsys, ["audit", "query", "--store", url, "--json"])
    assert [r["request_id"] for r in doc["records"]] == ["r0", "r1", "r2"]  # type: ignore[attr-defined]


def test_bad_time_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unparsable --since exits 1 with a one-line message."""
    assert main(["audit", "query", "--store", f"sqlite:///{tmp_path}/d.db", "--since", "soon"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("extapi-kit: error: invalid time") and err.count("\n") == 1


def test_parse_time_accepts_iso_and_ages() -> None:
    """ISO 8601 (naive = UTC) and ages ("90m") both parse."""
    assert parse_time("2026-01-31T12:00:00Z").isoformat() == "2026-01-31T12:00:00+00:00"
    assert parse_time("2026-01-31T12:00:00").isoformat() == "2026-01-31T12:00:00+00:00"
    assert parse_time("90m", now=10_000.0).timestamp() == 4_600.0
