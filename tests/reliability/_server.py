"""Start :mod:`tests.reliability.server_app` under uvicorn as a subprocess on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProc:
    """A running uvicorn serving the reliability stack.

    Args:
        proc: the uvicorn process.
        port: its loopback port.
        audit_db: the SQLite audit file.
        effects: the side-effects file.
        log: file receiving the server's stderr/stdout.
    """

    proc: subprocess.Popen[bytes]
    port: int
    audit_db: Path
    effects: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit_rows(self) -> int:
        if not self.audit_db.exists():
            return 0
        conn = sqlite3.connect(self.audit_db, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM audit_records").fetchone()[0])
        except sqlite3.OperationalError:  # table not created yet
            return 0
        finally:
            conn.close()

    def lifespan_events(self) -> list[str]:
        path = Path(f"{self.effects}.lifespan")
        return path.read_text().split() if path.exists() else []

    def signal(self, sig: int) -> int:
        """Send ``sig`` and wait for the exit code (bounded)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@contextmanager
def serve(tmp: Path, env: dict[str, str], *, workers: int = 1) -> Iterator[ServerProc]:
    """Run the stack under uvicorn (lifespan on, proxy headers off); kill it on exit.

    Args:
        tmp: directory for the audit, effects and log files.
        env: ``EXTAPI_REL_*`` settings (audit/effects paths are filled in).
        workers: uvicorn worker processes.
    """
    port = free_port()
    audit_db, effects, log = tmp / "audit.db", tmp / "effects.log", tmp / "server.log"
    full = {**os.environ, "EXTAPI_REL_AUDIT": str(audit_db), "EXTAPI_REL_EFFECTS": str(effects)}
    full.update(env)
    cmd = [sys.executable, "-m", "uvicorn", "tests.reliability.server_app:app", "--host"]
    cmd += ["127.0.0.1", "--port", str(port), "--lifespan", "on", "--no-proxy-headers"]
    cmd += ["--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProc(proc, port, audit_db, effects, log)
    try:
        _wait_listening(port, proc)
        yield server
    finally:
        # The server and its workers share a session we created: end them all, by group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
