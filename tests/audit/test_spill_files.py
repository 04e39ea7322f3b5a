"""Spill files are private and never trusted blindly: their records go back into the sink (G4)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from extapi_kit.audit import AuditRecord, AuditWriter, MemorySink
from extapi_kit.audit.spill import SpillFile, default_spill_path
from extapi_kit.exceptions import StoreUnavailableError


class _Flaky(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        if self.down:
            raise StoreUnavailableError("switched off")
        await super().write_batch(records)


def _records(n: int, tag: str) -> list[AuditRecord]:
    return [
        AuditRecord(
            timestamp_us=1_800_000_000_000_000 + i, request_id=f"{tag}{i}", method="GET", path="/"
        )
        for i in range(n)
    ]


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp dir the spill code sees (tempfile.gettempdir()), made world-writable like /tmp."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    return shared


def _injected(path: Path) -> None:
    path.write_text("".join(r.to_json() + "\n" for r in _records(3, "evil")))


@pytest.mark.usefixtures("umask_022")
def test_spill_file_and_its_directories_are_created_private(tmp_path: Path) -> None:
    """G4: under umask 022 a spill file is created 0600 and the directories made for it 0700."""
    spill = SpillFile(str(tmp_path / "spills" / "deep" / "0-sink.jsonl"))
    spill.append(_records(2, "r"))
    spill.replace(_records(1, "r"))  # the rewrite keeps the mode too
    assert _mode(spill.path) == 0o600
    assert _mode(tmp_path / "spills") == 0o700
    assert _mode(tmp_path / "spills" / "deep") == 0o700


@pytest.mark.usefixtures("umask_022")
def test_default_spill_path_is_in_a_private_directory_not_the_shared_temp_dir(
    private_tmp: Path,
) -> None:
    """G4: without a spill dir or SQLite file, the spill file lives in a 0700 directory of this
    user inside the temp dir, not under a guessable name in the shared temp dir itself."""
    path = Path(default_spill_path(MemorySink(), 0, None))
    assert path.parent.parent == private_tmp
    assert path.parent.is_dir() and not path.parent.is_symlink()
    assert _mode(path.parent) == 0o700
    assert path.parent.stat().st_uid == os.geteuid()
    SpillFile(str(path)).append(_records(1, "r"))
    assert _mode(path) == 0o600


def test_a_planted_directory_at_the_private_name_is_not_used(private_tmp: Path) -> None:
    """G4: if the per-user directory name is taken by a symlink (or a shared directory), spill
    files go to a fresh private directory instead."""
    elsewhere = private_tmp / "attacker"
    elsewhere.mkdir(mode=0o777)
    os.symlink(elsewhere, private_tmp / f"extapi-kit-{os.geteuid()}")
    path = Path(default_spill_path(MemorySink(), 0, None))
    assert elsewhere not in path.parents
    assert path.parent.parent == private_tmp and _mode(path.parent) == 0o700


def test_symlink_at_the_spill_path_is_never_followed(tmp_path: Path) -> None:
    """G4: a symlink planted at the spill name is neither written through nor read, and the
    rewrite never follows a link planted at a temporary name."""
    target = tmp_path / "victim.jsonl"
    _injected(target)
    before = target.read_text()
    spill = SpillFile(str(tmp_path / "0-sink.jsonl"))
    os.symlink(target, spill.path)
    with pytest.raises(OSError):
        spill.append(_records(1, "r"))
    with pytest.raises(OSError):
        spill.read()
    assert target.read_text() == before
    os.remove(spill.path)
    os.symlink(target, spill.path + ".tmp")  # the name the rewrite used to use
    spill.append(_records(2, "r"))
    spill.replace(_records(1, "r"))
    assert target.read_text() == before
    assert [r.request_id for r in spill.read()] == ["r0"]


def test_spill_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    """G4: a spill file others can write (records could be slipped in) is not read or appended."""
    path = tmp_path / "0-sink.jsonl"
    _injected(path)
    os.chmod(path, 0o666)
    spill = SpillFile(str(path))
    with pytest.raises(PermissionError, match="writable by group or others"):
        spill.read()
    with pytest.raises(PermissionError):
        spill.append(_records(1, "r"))


@pytest.mark.parametrize("planted", ["hard link", "fifo"])
def test_hard_link_or_fifo_at_the_spill_path_is_refused(planted: str, tmp_path: Path) -> None:
    """G4: a second name for another file (hard link) or a FIFO at the spill name is refused at
    once (a FIFO never blocks the open)."""
    path = tmp_path / "0-sink.jsonl"
    if planted == "hard link":
        other = tmp_path / "other.jsonl"
        _injected(other)
        os.chmod(other, 0o600)
        os.link(other, path)
        reason = "hard links"
    else:
        os.mkfifo(path, 0o600)
        reason = "not a regular file"
    spill = SpillFile(str(path))
    with pytest.raises(PermissionError, match=reason):
        spill.read()
    if planted == "hard link":
        with pytest.raises(PermissionError, match=reason):
            spill.append(_records(1, "r"))


def test_spill_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """G4: a spill file owned by another user is neither read nor appended to."""
    if os.geteuid() != 0:
        pytest.skip("making a file owned by another user needs root")
    path = tmp_path / "0-sink.jsonl"
    _injected(path)
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    spill = SpillFile(str(path))
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        spill.read()
    with pytest.raises(PermissionError):
        spill.append(_records(1, "r"))


@pytest.mark.anyio
@pytest.mark.parametrize("planted", ["symlink", "world-writable", "foreign"])
async def test_planted_spill_file_is_never_resent_into_the_sink(
    planted: str, tmp_path: Path
) -> None:
    """G4: records in a symlinked, world-writable or foreign file at the spill path never reach
    the audit sink; the writer goes on delivering, and the planted file is left untouched."""
    if planted == "foreign" and os.geteuid() != 0:
        pytest.skip("making a file owned by another user needs root")
    sink = _Flaky()
    spill_path = Path(default_spill_path(sink, 0, str(tmp_path)))
    if planted == "symlink":
        target = tmp_path / "elsewhere.jsonl"
        _injected(target)
        os.symlink(target, spill_path)
    else:
        target = spill_path
        _injected(target)
        os.chmod(target, 0o666 if planted == "world-writable" else 0o600)
        if planted == "foreign":
            os.chown(target, 65534, 65534)
    before = target.read_text()
    writer = AuditWriter([sink], spill_dir=str(tmp_path))
    for rec in _records(2, "ok"):
        writer.put(rec)
    await writer.flush()
    sink.down = True  # a failure now must not write through the planted file either
    for rec in _records(1, "lost"):
        writer.put(rec)
    await writer.flush()
    sink.down = False
    await writer.flush()
    await writer.aclose()
    assert [r.request_id for r in sink.records] == ["ok0", "ok1"]
    assert writer.dropped == 1 and writer.resent == 0
    assert target.read_text() == before
