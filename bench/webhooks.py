"""Webhook dispatcher benchmark: throughput, publish-to-delivery latency, one hanging endpoint.

The receiver is a separate uvicorn process on 127.0.0.1 (so sender and receiver use both cores, as
in the issue's setup); it answers 204, counts requests per path and records the latency from the
publish time carried in the payload. ``/hang`` never answers (until the sender's deadline).

``python -m bench.webhooks`` prints the rows; ``run()`` returns them for ``python -m bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.webhooks import WebhookDispatcher, WebhookManager, publish_event
from extapi_kit.webhooks.sender import AttemptResult, WebhookSender
from extapi_kit.webhooks.ssrf import URLGuard
from extapi_kit.webhooks.store import WebhookStore, webhook_store_from_url

ROOT = Path(__file__).resolve().parents[1]
N_THROUGHPUT = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_WEBHOOK_CONCURRENCY", "16"))
RATE = 500
SECONDS = 4

_counts: dict[str, int] = {}
_latencies: list[float] = []


async def receiver(scope: Scope, receive: Receive, send: Send) -> None:
    """The benchmark receiver (ASGI): 204 and counting; ``/hang`` waits for the disconnect."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/hang":
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    if path == "/stats":
        out = json.dumps({"counts": _counts, "latencies": _latencies}).encode()
        if scope["method"] == "DELETE":
            _counts.clear()
            _latencies.clear()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": out})
        return
    _counts[path] = _counts.get(path, 0) + 1
    sent_at = json.loads(body).get("data", {}).get("t")
    if sent_at is not None:
        _latencies.append(time.time() - sent_at)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _store(url: str) -> WebhookStore:
    """A store of its own for each measurement: on Redis a fresh key prefix, so entries a
    previous row left behind (a hanging endpoint's, say) never weigh on the next row."""
    if url.startswith("redis"):
        return webhook_store_from_url(url, prefix=f"bench:{os.urandom(4).hex()}:")
    return webhook_store_from_url(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _stats(client: httpx.AsyncClient, base: str, reset: bool = False) -> dict[str, Any]:
    r = await (client.delete if reset else client.get)(base + "/stats")
    data: dict[str, Any] = r.json()
    return data


async def _wait(client: httpx.AsyncClient, base: str, paths: list[str], n: int) -> float:
    start = time.perf_counter()
    while True:
        counts = (await _stats(client, base))["counts"]
        if all(counts.get(p, 0) >= n for p in paths):
            return time.perf_counter() - start
        await asyncio.sleep(0.02)


async def _setup(store: WebhookStore, base: str, paths: list[str]) -> None:
    manager = WebhookManager(store, allow_loopback=True)
    for e in await manager.list_endpoints():
        await manager.remove_endpoint(e.id)
    for p in paths:
        await manager.add_endpoint(base + p)


def _dispatcher(store: WebhookStore, per_endpoint: int = CONCURRENCY) -> WebhookDispatcher:
    return WebhookDispatcher(
        store, allow_loopback=True, concurrency=CONCURRENCY, per_endpoint_concurrency=per_endpoint,
        poll_interval=0.05,
    )  # fmt: skip


async def _throughput(url: str, base: str, client: httpx.AsyncClient) -> dict[str, Any]:
    store = _store(url)
    paths = ["/a", "/b"]
    await _setup(store, base, paths)
    per = N_THROUGHPUT // len(paths)
    for i in range(per):
        await publish_event(store, "bench", {"i": i})
    await _stats(client, base, reset=True)
    async with _dispatcher(store):
        elapsed = await _wait(client, base, paths, per)
    await store.aclose()
    total = per * len(paths)
    return {"name": f"throughput {url.split(':')[0]}", "deliveries": total,
            "per_second": total / elapsed}  # fmt: skip


class _NullSender:
    """Answers 204 at once: measures the dispatcher and store without HTTP (httpx costs apart)."""

    def __init__(self, expect: int) -> None:
        self.sent = 0
        self.expect = expect
        self.done = asyncio.Event()

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptResult:
        await asyncio.sleep(0)
        self.sent += 1
        if self.sent >= self.expect:
            self.done.set()
        return AttemptResult(status=204, duration=0.0)

    async def aclose(self) -> None:
        return None


async def _overhead(url: str) -> dict[str, Any]:
    store = _store(url)
    await _setup(store, "http://127.0.0.1:9", ["/a", "/b"])
    per = N_THROUGHPUT // 2
    for i in range(per):
        await publish_event(store, "bench", {"i": i})
    sender = _NullSender(per * 2)
    start = time.perf_counter()
    async with WebhookDispatcher(
        store,
        sender=sender,
        concurrency=CONCURRENCY,
        per_endpoint_concurrency=CONCURRENCY,
        poll_interval=0.05,
    ):
        await sender.done.wait()
    elapsed = time.perf_counter() - start
    await store.aclose()
    return {"name": f"dispatch without HTTP {url.split(':')[0]}", "deliveries": per * 2,
            "per_second": per * 2 / elapsed}  # fmt: skip


async def _sender_only(base: str) -> dict[str, Any]:
    """One WebhookSender, sequential signed-size POSTs on a kept-alive connection: rate and CPU."""
    n = min(N_THROUGHPUT, 2000)
    body = json.dumps({"type": "bench", "data": {"i": 1}}).encode()
    headers = {"webhook-id": "msg_bench", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    async with WebhookSender(guard=URLGuard(allow_loopback=True)) as sender:
        await sender.send(base + "/s", headers, body)  # connect outside the measurement
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await sender.send(base + "/s", headers, body)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"name": "sender only (sequential)", "deliveries": n, "per_second": n / elapsed,
            "cpu_us_per_request": cpu / n * 1e6}  # fmt: skip


async def _latency(url: str, base: str, client: httpx.AsyncClient) -> dict[str, Any]:
    store = _store(url)
    await _setup(store, base, ["/l"])
    await _stats(client, base, reset=True)
    n = RATE * SECONDS
    async with _dispatcher(store) as dispatcher:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await dispatcher.publish("bench", {"t": time.time()})
        await _wait(client, base, ["/l"], n)
    lat = (await _stats(client, base))["latencies"]
    await store.aclose()
    lat.sort()
    return {"name": f"latency {url.split(':')[0]} @{RATE}/s", "deliveries": n,
            "median_ms": statistics.median(lat) * 1000,
            "p95_ms": lat[int(len(lat) * 0.95)] * 1000}  # fmt: skip


async def _hang(url: str, base: str, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    healthy = ["/h1", "/h2", "/h3"]
    rates = {}
    for label, paths in (("baseline", healthy), ("one hanging", [*healthy, "/hang"])):
        store = _store(url)
        await _setup(store, base, paths)
        per = int(os.environ.get("BENCH_WEBHOOK_HANG_EVENTS", "1500"))
        for i in range(per):
            await publish_event(store, "bench", {"i": i})
        await _stats(client, base, reset=True)
        dispatcher = _dispatcher(store, per_endpoint=CONCURRENCY // 4)
        await dispatcher.start()
        elapsed = await _wait(client, base, healthy, per)
        await dispatcher.stop(grace=0.1)
        await store.aclose()
        rates[label] = per * len(healthy) / elapsed
    ratio = rates["one hanging"] / rates["baseline"]
    return [{"name": f"healthy {label} {url.split(':')[0]}", "per_second": r}
            for label, r in rates.items()] + [
        {"name": f"healthy kept with one hanging ({url.split(':')[0]})", "percent": ratio * 100}
    ]  # fmt: skip


async def _main(base: str, redis_url: str, tmp: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(100):
            try:
                await _stats(client, base)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        rows.append(await _sender_only(base))
        for i, url in enumerate((f"sqlite:///{tmp}/bench.db", redis_url)):
            rows.append(await _overhead(url.replace("bench.db", f"null{i}.db")))
            rows.append(await _throughput(url, base, client))
            rows.append(await _latency(url.replace("bench.db", f"lat{i}.db"), base, client))
            rows += await _hang(url.replace("bench.db", f"hang{i}.db"), base, client)
    return rows


def run() -> list[dict[str, Any]]:
    """Run the webhook benchmark (receiver process, private Redis) and return its rows."""
    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import RedisServer

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.webhooks:receiver", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
        cwd=str(ROOT),
    )  # fmt: skip
    redis = RedisServer()
    try:
        redis.start()
        tmp = tempfile.mkdtemp(prefix="bench-webhooks-")
        return asyncio.run(_main(f"http://127.0.0.1:{port}", redis.url, tmp))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        redis.stop()


if __name__ == "__main__":
    for row in run():
        print(row)
