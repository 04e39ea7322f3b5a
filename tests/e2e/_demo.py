"""Run ``extapi-kit demo`` in a subprocess on a free 127.0.0.1 port; the CLI as a third party."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from extapi_kit.cli import main as cli_main
from tests.support.ports import free_port

__all__ = ["DemoServer", "free_port", "raw_request", "run_cli", "start_demo"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoServer:
    """A running demo process.

    Args:
        proc: the process.
        url: its base URL.
        info: the JSON line it printed (admin key, store URLs).
        data_dir: its data directory.
    """

    proc: subprocess.Popen[bytes]
    url: str
    info: dict[str, Any]
    data_dir: Path
    stores: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the process (SIGINT, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_demo(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> DemoServer:
    """Start ``python -m extapi_kit.cli demo`` and wait until ``/health`` answers.

    Args:
        data_dir: the data directory.
        *extra: more ``demo`` arguments.
        env: more environment variables.
    """
    port = free_port()
    argv = [sys.executable, "-m", "extapi_kit.cli", "demo", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--json", "--log-level", "warning", *extra]
    # Neither variable may choose the demo's stores behind a test's back (DATABASE_URL: --postgres).
    unset = ("REDIS_URL", "DATABASE_URL")
    full_env = {k: v for k, v in os.environ.items() if k not in unset} | (env or {})
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=str(data_dir.parent), env=full_env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"the demo exited with {proc.returncode} before printing its key")
    info = json.loads(line)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise RuntimeError("the demo did not answer /health within 30 s")
        time.sleep(0.1)
    return DemoServer(proc, url, info, data_dir, dict(info["store_urls"]))


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv)
    return code, out.getvalue()


async def run_cli(*argv: str) -> Any:
    """Run ``extapi_kit.cli.main([*ARGV, "--json"])`` (in a thread) and return its JSON output.

    Args:
        *argv: the CLI arguments.
    """
    code, out = await anyio.to_thread.run_sync(_cli, [*argv, "--json"])
    assert code == 0, out
    return json.loads(out)


def raw_request(url: str, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send one request with the target sent byte for byte (no client-side normalisation).

    Args:
        url: the server's base URL.
        method: the request method.
        target: the raw request target.
        headers: extra headers.
    """
    host, port = httpx.URL(url).host, httpx.URL(url).port
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Content-Length: 0")
    with socket.create_connection((host, port or 80), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.partition(b"\r\n\r\n")[2]
