"""``extapi-kit webhooks`` refuses out-of-bounds settings, naming the flag (W14, M10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from extapi_kit.cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["add", "http://93.184.216.34:99999/hook"], "port"),
        (["add", "http://93.184.216.34:0/hook"], "port"),
        (["add", "https://example.com/h", "--rate", "inf"], "--rate"),
        (["add", "https://example.com/h", "--rate", "1e308"], "--rate"),
        (["add", "https://example.com/h", "--rate", "0"], "--rate"),
        (["add", "https://example.com/h", "--concurrency", "1000000000"], "--concurrency"),
    ],
)
def test_add_refuses_out_of_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """W14/M10: `webhooks add` with port 99999/0, --rate inf/1e308 or a huge cap exits 1 with an
    error naming the port or the flag, and registers nothing."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    assert main(["webhooks", *argv, *store]) == 1
    err = capsys.readouterr().err
    assert "error" in err and named in err
    assert main(["webhooks", "list", *store]) == 1  # nothing registered, not even a store
    assert "webhook store does not exist" in capsys.readouterr().err


def test_update_and_rotate_refuse_out_of_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """W14/M10: `webhooks update` refuses a bad port or --rate inf; `rotate-secret --grace 1e308`
    (old secrets never expire) is refused naming --grace; --rate 0 still clears the limit."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    assert main(["webhooks", "add", "https://example.com/h", "--rate", "5", *store]) == 0
    ep_id = capsys.readouterr().out.split()[0]
    cases = [
        (["update", ep_id, "--url", "http://93.184.216.34:99999/hook"], "port"),
        (["update", ep_id, "--rate", "inf"], "--rate"),
        (["rotate-secret", ep_id, "--grace", "1e308"], "--grace"),
        (["rotate-secret", ep_id, "--grace", "400d"], "--grace"),
    ]
    for argv, named in cases:
        assert main(["webhooks", *argv, *store]) == 1, argv
        assert named in capsys.readouterr().err
    assert main(["webhooks", "update", ep_id, "--rate", "0", *store]) == 0
    assert main(["webhooks", "rotate-secret", ep_id, "--grace", "30d", *store]) == 0
