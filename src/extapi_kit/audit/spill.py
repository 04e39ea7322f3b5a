"""The local spill file: JSON lines of records a sink could not take, re-sent when it recovers.

Its records go back into the audit sink, so a file someone else planted at its name must never be
read (issue 15 G4): files are created ``0600`` with ``O_EXCL``, every open uses ``O_NOFOLLOW``,
and an existing file is used only when it is a regular file of ours that nobody else can write.
Without a configured directory the file lives in a private per-user directory of the temp dir,
not under a guessable name in the shared temp dir itself.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Sequence

from extapi_kit._files import DIR_MODE, FILE_MODE, check_private_file, make_private_dirs
from extapi_kit.audit.record import AuditRecord

__all__ = ["SpillFile", "default_spill_path"]

logger = logging.getLogger("extapi_kit.audit.spill")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO planted at the name must fail or return at once, never hang.
_OPEN_FLAGS = _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def default_spill_path(sink: object, index: int, spill_dir: str | None) -> str:
    """Return where a sink's spill file lives.

    With ``spill_dir`` set: ``<spill_dir>/<index>-<sink class>.jsonl`` (stable across restarts,
    so records left over by a previous run are re-sent). Otherwise next to a SQLite sink's file,
    or in the temp directory under a per-process name.

    Args:
        sink: the sink.
        index: its position in the middleware's sink list.
        spill_dir: the configured spill directory, or None.
    """
    name = f"{index}-{type(sink).__name__.lower()}.jsonl"
    if spill_dir is not None:
        return os.path.join(spill_dir, name)
    path = getattr(sink, "path", None)
    if isinstance(path, str) and path and path != ":memory:":
        return f"{path}.spill-{index}.jsonl"
    return os.path.join(_private_temp_dir(), f"audit-{os.getpid()}-{name}")


def _private_temp_dir() -> str:
    # The shared temp dir is writable by every local user: use a 0700 directory of ours in it,
    # and a fresh random one if that name is taken by something we cannot trust.
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"extapi-kit-{uid}")
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    except OSError:  # pragma: no cover - an unwritable temp dir fails later, with the path named
        return path
    try:
        st = os.lstat(path)
    except OSError:  # pragma: no cover - removed between mkdir and lstat
        st = None
    if (
        st is not None
        and stat.S_ISDIR(st.st_mode)
        and st.st_uid == uid
        and not stat.S_IMODE(st.st_mode) & 0o077
    ):
        return path
    logger.warning(
        "%s is not a private directory of this user; spilling audit records to a new one", path
    )
    return tempfile.mkdtemp(prefix="extapi-kit-audit-")


class SpillFile:
    """An append-only JSON-lines file with whole-file read and rewrite (blocking; run in a thread).

    Args:
        path: the file path (its directory is created on first write).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpillFile({self.path!r})"

    def has_records(self) -> bool:
        """Return whether something non-empty has the file's name (a link is not followed)."""
        try:
            return os.lstat(self.path).st_size > 0
        except OSError:
            return False

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Append records, one JSON object per line, and fsync.

        Args:
            records: the records.
        """
        lines = "".join(r.to_json() + "\n" for r in records)
        with self._lock:
            make_private_dirs(os.path.dirname(os.path.abspath(self.path)))
            fd = self._open_for_append()
            try:
                os.write(fd, lines.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def _open_for_append(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | _OPEN_FLAGS
        try:
            return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        fd = os.open(self.path, flags)  # ELOOP on a symlink
        try:
            check_private_file(fd, self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self) -> list[AuditRecord]:
        """Return every record in the file (a torn last line is skipped).

        Raises:
            OSError: something that is not a file of ours has the name (a symlink, a file of
                another user or one others can write); it is never read.
        """
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
            except FileNotFoundError:
                return []
            try:
                check_private_file(fd, self.path)
            except BaseException:
                os.close(fd)
                raise
            with os.fdopen(fd, encoding="utf-8") as fh:
                raw = fh.read().splitlines()
        out = []
        for line in raw:
            try:
                out.append(AuditRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError):
                continue
        return out

    def replace(self, records: Sequence[AuditRecord]) -> None:
        """Replace the file's content with these records (remove it when there are none).

        Args:
            records: the records that remain.
        """
        with self._lock:
            if not records:
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                return
            # mkstemp: a fresh 0600 name (O_EXCL), never a guessable one someone could link.
            directory, base = os.path.split(os.path.abspath(self.path))
            fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    for r in records:
                        fh.write(r.to_json() + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)  # replaces a link itself, never its target
            except BaseException:
                try:
                    os.remove(tmp)
                except FileNotFoundError:
                    pass
                raise
