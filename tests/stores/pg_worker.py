"""A worker process for the PostgreSQL cross-process tests.

``python -m tests.stores.pg_worker keys URL KEY``: verify KEY (now cached for an hour), print
``ready``, then verify every 10 ms and print ``refused <epoch seconds>`` once it is refused.

``python -m tests.stores.pg_worker idem URL FILE``: send 10 idempotency keys x 5 concurrent
requests through IdempotencyMiddleware; the app appends the key to FILE (the side effect). Prints
the status counts as JSON.

``python -m tests.stores.pg_worker migrate URL``: run the migrations and print what was applied.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import sys
import time
from collections import Counter

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.exceptions import InvalidKeyError


async def keys(url: str, key: str) -> None:
    """Wait until ``key`` is refused, with a positive cache that never expires by itself."""
    from extapi_kit.keys.service import KeyService
    from tests.keys.support import cheap_hasher

    # The real clock (the revocation time comes from the other process); a one-hour cache.
    svc = KeyService(url, hasher=cheap_hasher(), cache_ttl=3600)
    await svc.verify(key)
    await svc.verify(key)  # from the positive cache now
    print("ready", flush=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            await svc.verify(key)
        except InvalidKeyError:
            print(f"refused {time.time()}", flush=True)
            break
        await asyncio.sleep(0.01)
    await svc.store.aclose()


def _record(path: str, key: str) -> None:
    with open(path, "a") as f:  # one small O_APPEND write: lines never interleave
        f.write(key + "\n")


async def idem(url: str, path: str) -> dict[str, int]:
    """Send the same 10 keys, 5 times each, concurrently; count the answers."""
    import httpx

    from extapi_kit.middleware.idempotency import IdempotencyMiddleware

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        await asyncio.sleep(0.05)  # the other process's requests arrive while this one runs
        _record(path, headers[b"idempotency-key"].decode())
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"made"})

    mw = IdempotencyMiddleware(app, store=url, store_timeout=10)
    statuses: Counter[str] = Counter()
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

        async def one(n: int) -> None:
            r = await c.post("/orders", content=b"{}", headers={"idempotency-key": f'"k{n}"'})
            statuses[str(r.status_code)] += 1

        await asyncio.gather(*(one(n) for n in range(10) for _ in range(5)))
    await mw.aclose()
    return dict(statuses)


async def migrate(url: str) -> dict[str, list[int]]:
    """Run every registered migration once."""
    from extapi_kit.cli.db import migrate_url

    return await migrate_url(url)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(30, exit=True)
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "keys":
        asyncio.run(keys(url, sys.argv[3]))
    elif mode == "idem":
        print(json.dumps(asyncio.run(idem(url, sys.argv[3]))))
    else:
        print(json.dumps(asyncio.run(migrate(url))))
