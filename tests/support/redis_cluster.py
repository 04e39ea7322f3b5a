"""A private Redis Cluster (3 masters + 3 replicas) and a private Sentinel group, for tests.

Every node is a :class:`~tests.support.redis_server.RedisServer` child process on a free loopback
port, owned by PID; the cluster is formed with ``redis-cli --cluster create``. Failover tests
kill a master and wait for its replica to be promoted; migration tests move a slot by hand
(``CLUSTER SETSLOT ... IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT ... NODE``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

# Cluster node timeout: short so a killed master is failed over in ~1-2 s.
# Failover tests own their cluster and want a dead master noticed fast. The shared session cluster
# must never fail over on its own: on a loaded 2-core box a starved node can miss a 1 s timeout,
# and a promotion mid-test splits one key's writes between the old and the new master.
NODE_TIMEOUT_MS = 1000
SESSION_NODE_TIMEOUT_MS = 30000


def wait_replicated(master: RedisServer, timeout: float = 10.0) -> None:
    """Wait until every replica of ``master`` is online at the master's replication offset.

    Replication is asynchronous: a master killed a moment after a write may take it along
    (Redis documents this window). Failover tests kill only after the replicas caught up.
    """
    deadline = time.monotonic() + timeout
    c = redis.Redis(host="127.0.0.1", port=master.port, socket_timeout=2)
    target: int | None = None
    try:
        while True:
            info = c.info("replication")
            # The writes made so far (traffic may go on: replicas ack once a second).
            offset = target = int(info["master_repl_offset"]) if target is None else target
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if replicas and all(
                r.get("state") == "online" and int(r.get("offset", -1)) >= offset for r in replicas
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas of :{master.port} did not catch up: {info}")
            time.sleep(0.05)
    finally:
        c.close()


class RedisClusterNodes:
    """Six redis-server processes formed into a cluster (3 masters, 1 replica each)."""

    def __init__(self, size: int = 6, *, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        self.nodes = [
            RedisServer(
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-replica-validity-factor",
                    "0",
                ],
                cluster_bus=True,
            )
            for _ in range(size)
        ]

    @staticmethod
    def available() -> bool:
        return RedisServer.available() and shutil.which("redis-cli") is not None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"redis+cluster://{hosts}/"

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        self.wait_ok(timeout)

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)

    def _call(self, node: RedisServer, *args: Any) -> Any:
        c = self.client(node)
        try:
            return c.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            c.close()

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and all slots are served."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._state_ok(n) for n in self.alive()):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)

    def _state_ok(self, node: RedisServer) -> bool:
        info = self._call(node, "CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return fields.get("cluster_state") == "ok" and fields.get("cluster_slots_ok") == "16384"

    def masters(self) -> list[RedisServer]:
        out = []
        for node in self.alive():
            role = self._call(node, "ROLE")
            if role[0] in (b"master", "master"):
                out.append(node)
        return out

    def node_id(self, node: RedisServer) -> str:
        raw = self._call(node, "CLUSTER", "MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def master_of_slot(self, slot: int) -> RedisServer:
        for node in self.masters():
            for start, end, *_ in self._call(node, "CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(_[0][1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def kill_master_of(self, slot: int) -> RedisServer:
        """Kill the master serving ``slot`` once its replica has every write; return it."""
        node = self.master_of_slot(slot)
        wait_replicated(node)
        node.kill()
        return node

    def restart(self, node: RedisServer) -> None:
        """Start a killed node again (it rejoins from its nodes.conf, as a replica)."""
        node.start()

    def migrate_slot(self, slot: int, keys_per_step: int = 100) -> tuple[RedisServer, RedisServer]:
        """Move ``slot`` to another master, key by key, as ``redis-cli --cluster reshard`` does."""
        source = self.master_of_slot(slot)
        target = next(n for n in self.masters() if n is not source)
        sid, tid = self.node_id(source), self.node_id(target)
        self._call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        self._call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", tid)
        while True:
            keys = self._call(source, "CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
            if not keys:
                break
            self._call(
                source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys
            )
            time.sleep(0.01)  # let traffic hit the slot mid-migration (ASK redirections)
        for node in self.masters():
            self._call(node, "CLUSTER", "SETSLOT", slot, "NODE", tid)
        return source, target

    def flush(self) -> None:
        for node in self.masters():
            self._call(node, "FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelGroup:
    """One master, one replica and three sentinels on loopback."""

    def __init__(self, name: str = "extapi") -> None:
        self.name = name
        self.master = RedisServer()
        self.replica = RedisServer()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self._dirs: list[str] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.name}"

    def start(self, timeout: float = 30.0) -> None:
        self.master.start()
        self.replica.extra = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        for i in range(len(self.sentinel_ports)):
            self.sentinels.append(self._start_sentinel(exe, i))
        deadline = time.monotonic() + timeout
        restarts = 0
        while True:
            for i, proc in enumerate(self.sentinels):
                # A port chosen a moment ago may have been taken since: move that sentinel.
                if proc.poll() is not None and restarts < 5:
                    restarts += 1
                    self.sentinel_ports[i] = free_port()
                    self.sentinels[i] = self._start_sentinel(exe, i)
            try:
                if self._sentinels_ready():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not become ready")
            time.sleep(0.1)

    def _start_sentinel(self, exe: str, i: int) -> subprocess.Popen[bytes]:
        port = self.sentinel_ports[i]
        d = tempfile.mkdtemp(prefix="extapi-sentinel-")
        self._dirs.append(d)
        conf = Path(d) / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {d}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {self.name} 1000\n"
            f"sentinel failover-timeout {self.name} 5000\n"
            f"sentinel parallel-syncs {self.name} 1\n"
        )
        return subprocess.Popen(
            [exe, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                info: Any = c.sentinel_master(self.name)
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                    return False
            finally:
                c.close()
        return True

    def current_master_port(self) -> int:
        c = redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=1)
        try:
            _host, port = c.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name
            )
            return int(port)
        finally:
            c.close()

    def servers(self) -> Iterable[RedisServer]:
        return (self.master, self.replica)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.sentinels = []
        for server in self.servers():
            server.stop()
