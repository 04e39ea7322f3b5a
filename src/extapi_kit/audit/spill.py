"""The local spill file: JSON lines of records a sink could not take, re-sent when it recovers."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Sequence

from extapi_kit.audit.record import AuditRecord

__all__ = ["SpillFile", "default_spill_path"]


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
    return os.path.join(tempfile.gettempdir(), f"extapi-kit-audit-{os.getpid()}-{name}")


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
        """Return whether the file exists and is not empty."""
        try:
            return os.path.getsize(self.path) > 0
        except OSError:
            return False

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Append records, one JSON object per line, and fsync.

        Args:
            records: the records.
        """
        lines = "".join(r.to_json() + "\n" for r in records)
        with self._lock:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, lines.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[AuditRecord]:
        """Return every record in the file (a torn last line is skipped)."""
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    raw = fh.read().splitlines()
            except FileNotFoundError:
                return []
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
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(r.to_json() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
