"""A worker process for the cross-process credits tests: N concurrent requests of one key.

Usage: ``python -m tests.credits.worker_proc URL N``. On Redis the whole hot path runs
(RateLimitMiddleware spending the credits in its script, CreditsMiddleware reading the
decision); on SQLite and PostgreSQL the credits layer spends them itself. Prints
``{"200": a, "402": b}`` as JSON.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import sys
from collections import Counter

from extapi_kit._types import ASGIApp
from extapi_kit.credits import CreditLedger, CreditsMiddleware
from extapi_kit.credits.store import CreditStore
from extapi_kit.credits.store_redis import RedisCreditStore
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.stores import store_from_url
from tests.credits.support import client, ok_app, with_principals


async def main(url: str, n: int) -> dict[str, int]:
    """Send ``n`` requests at once as key ``ka`` (owner ``acme``) and return the status counts."""
    # Generous deadlines for a loaded 2-core box: a store error shows up as a 503 (and fails
    # the test) instead of admitting beyond the balance.
    store: CreditStore
    if url.startswith("redis"):
        store = RedisCreditStore.from_url(url, socket_timeout=10.0)
    elif url.startswith("postgres"):
        store = store_from_url("credits", url, statement_timeout=10.0, pool_timeout=20.0)
    else:
        store = store_from_url("credits", url, busy_timeout=20.0)
    ledger = CreditLedger(store, metered_ttl=0)
    app: ASGIApp = CreditsMiddleware(ok_app, ledger=ledger)
    rl = None
    if url.startswith("redis"):
        rl = RateLimitMiddleware(
            app,
            storage=url,
            read="100000/minute",
            credits=ledger,
            failure_mode="closed",
            deadline=10.0,
        )
        app = rl
    statuses: Counter[str] = Counter()
    async with client(with_principals(app)) as c:

        async def one() -> None:
            r = await c.get("/x", headers={"x-who": "a"})
            statuses[str(r.status_code)] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    if isinstance(store, RedisCreditStore):
        statuses["store_calls"] = store.calls
    if rl is not None:
        await rl.aclose()
    await ledger.aclose()
    await store.aclose()
    return dict(statuses)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(50, exit=True)  # a hang shows where, on stderr
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    print(json.dumps(result))
