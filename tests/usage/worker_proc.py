"""A worker process for the cross-process tests: N requests through UsageMiddleware on Redis or
PostgreSQL.

Usage: ``python -m tests.usage.worker_proc URL N QUOTA`` (the clock is fixed mid-November
2026 so both processes share one quota period). Prints ``{"200": a, "429": b}`` as JSON.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import sys
from collections import Counter

from extapi_kit.context import Principal
from extapi_kit.middleware.usage import UsageMiddleware
from extapi_kit.stores import store_from_url
from extapi_kit.testing import FakeClock
from extapi_kit.usage.store import UsageStore
from extapi_kit.usage.store_redis import RedisUsageStore
from tests.usage.support import MID_NOVEMBER, client, ok_app, with_principals


async def main(url: str, n: int, quota: int) -> dict[str, int]:
    """Send ``n`` requests (16 at a time) as key ``shared`` and return the status counts."""
    principal = Principal(key_id="shared", owner="acme", quota={"monthly": quota})
    # Closed on failure, with a generous timeout for a loaded 2-core box: a store error shows
    # up as a 503 (and fails the test) instead of admitting beyond the quota.
    store: UsageStore
    if url.startswith("postgres"):
        store = store_from_url("usage", url, statement_timeout=5.0, pool_timeout=5.0)
    else:
        store = RedisUsageStore.from_url(url, socket_timeout=5.0)
    mw = UsageMiddleware(
        ok_app,
        store=store,
        clock=FakeClock(MID_NOVEMBER),
        flush_interval=0.05,
        failure_mode="closed",
    )
    app = with_principals(mw, {"p": principal})
    statuses: Counter[str] = Counter()
    sem = asyncio.Semaphore(16)
    async with client(app) as c:

        async def one() -> None:
            async with sem:
                r = await c.get("/x", headers={"x-who": "p"})
                statuses[str(r.status_code)] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    await mw.aclose()
    await store.aclose()
    return dict(statuses)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(20, exit=True)  # a hang shows where, on stderr
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    print(json.dumps(result))
