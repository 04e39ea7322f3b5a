"""Resource-scoped webhooks, runnable: ``python -m examples.scoped_webhooks``.

Two integrators register endpoints with their own keys: one key is granted project 7, the other
every project. A real receiver on 127.0.0.1 records what arrives. Events about projects 7 and 9
are published; then the project-7 key is revoked and one more event is published. The output
shows that the scoped endpoint only ever received project 7, and nothing after the revocation.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import uvicorn
from argon2 import profiles

from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.webhooks import KeyGrants, WebhookDispatcher, WebhookManager
from extapi_kit.webhooks.store_memory import MemoryWebhookStore

__all__ = ["main"]


async def main() -> dict[str, list[Any]]:
    """Run the scenario; return endpoint path -> the project ids it received."""
    received: dict[str, list[Any]] = {}

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.setdefault(scope["path"], []).append(json.loads(body)["data"]["project_id"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(receiver, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"

    keys = KeyService("memory://", hasher=Argon2Hasher(profiles.CHEAPEST), cache_ttl=0)
    partner, _ = await keys.create("partner", grants={"projects": ["7"]})
    platform, _ = await keys.create("platform")  # no grants: every project

    store = MemoryWebhookStore()
    manager = WebhookManager(store, allow_loopback=True)
    await manager.add_endpoint(base + "/partner", principal=partner.to_principal())
    await manager.add_endpoint(base + "/platform", principal=platform.to_principal())
    dispatcher = WebhookDispatcher(
        store,
        allow_loopback=True,
        key_grants=KeyGrants(keys, ttl=0),
        resource_fields={"project_id": "projects"},
    )
    for project in (7, 9, 7):
        await dispatcher.publish("job.completed", {"project_id": project})
    await dispatcher.run_until_idle()
    await keys.revoke(partner.id)
    await dispatcher.publish("job.completed", {"project_id": 7})
    await dispatcher.run_until_idle()

    await dispatcher.aclose()
    await keys.aclose()
    server.should_exit = True
    await serving
    return received


if __name__ == "__main__":
    for path, projects in sorted(asyncio.run(main()).items()):
        print(f"{path:10} received projects {projects}")
