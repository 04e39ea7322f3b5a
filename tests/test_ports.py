"""The test suite's port picker: out of the ephemeral range, bindable, never handed out twice."""

from __future__ import annotations

import socket

import pytest

from tests.support import ports


def test_ports_come_from_below_the_ephemeral_range_and_are_distinct() -> None:
    """An outgoing connection can never hold a port picked below the kernel's ephemeral range, and
    twelve ports picked before any is bound (a cluster) are twelve different ones."""
    low, _ = ports._ephemeral_range()
    picked = [ports.free_port() for _ in range(12)]
    assert len(set(picked)) == 12
    for port in picked:
        assert ports._LOW <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free now


def test_a_port_in_use_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port something listens on is skipped."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        choices = iter([taken, taken + 1 if taken < 65535 else taken - 1])
        monkeypatch.setattr(ports, "_ephemeral_range", lambda: (65000, 65535))
        monkeypatch.setattr(ports._random, "randint", lambda a, b: next(choices))
        port = ports.free_port()
    assert port != taken


def test_no_room_below_the_range_falls_back_to_a_kernel_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the ephemeral range starting low, the picker asks the kernel (and never repeats)."""
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 65535))
    first, second = ports.free_port(), ports.free_port()
    assert first != second
    assert first >= 1024 and second >= 1024
