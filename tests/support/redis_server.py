"""A private redis-server process for tests: started on a free loopback port, owned by PID.

Fault-injection tests start their own instance and kill, pause (SIGSTOP) or restart it; the
session-wide instance is shared by ordinary tests and flushed between them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from tests.support.ports import free_port


class _PortTaken(RuntimeError):
    """redis-server could not bind a port chosen for it."""


class RedisServer:
    """A redis-server child process bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        extra: list[str] | None = None,
        cluster_bus: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.extra = list(extra or [])
        # A cluster node's bus port defaults to port + 10000, past 65535 for most free ports.
        self.cluster_bus_port = free_port() if cluster_bus else None
        # Ports chosen here were only free a moment ago: another process (or another of our own
        # free_port() picks) may hold one by the time redis-server binds it. The first start
        # then retries on fresh ports; a restart keeps its ports (clients know them).
        self._choose_ports = port is None
        self._started = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="extapi-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self, timeout: float = 10.0, *, attempts: int = 5) -> None:
        if self._started or not self._choose_ports:
            attempts = 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
            except _PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
                if self.cluster_bus_port is not None:
                    self.cluster_bus_port = free_port()
                continue
            self._started = True
            return

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-5:]).strip()
        except OSError:
            return ""

    def _start_once(self, timeout: float) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        bus = (
            [] if self.cluster_bus_port is None else ["--cluster-port", str(self.cluster_bus_port)]
        )
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--enable-debug-command",
                "local",
                "--logfile",
                "redis.log",
                *bus,
                *self.extra,
            ],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    log = self._log_tail()
                    message = (
                        f"redis-server on :{self.port} exited with {self.proc.returncode}: {log}"
                    )
                    if "Address already in use" in log or "bind" in log.lower():
                        raise _PortTaken(message)
                    raise RuntimeError(message)
                try:
                    info = client.info("server")
                except redis.RedisError:
                    if self.proc.poll() is not None:
                        continue  # exited: say why (above) rather than wait for the deadline
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
                    continue
                # Make sure we talk to the server we spawned, not another one on this port.
                if int(info["process_id"]) != self.proc.pid:
                    self.proc.kill()
                    self.proc.wait(5)
                    raise _PortTaken(f"port {self.port} is held by another redis-server")
                return
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            client.flushall()
        finally:
            client.close()
