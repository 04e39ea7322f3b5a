"""A second OS process for the plan-change tests (K1).

Run as ``python -m tests.plans.worker URL KEY RATE``.

It builds its own KeyService and PlanService over the store URL (positive cache TTL 1 hour, so
only a change notification can refresh it), verifies KEY once, prints ``ready <read limit>``, then
verifies every 5 ms until the principal's ``read`` limit equals RATE and prints the epoch time it
saw it (or ``timeout`` after 20 s).
"""

from __future__ import annotations

import asyncio
import sys
import time

from extapi_kit.keys.service import KeyService
from extapi_kit.plans import PlanService
from tests.keys.support import cheap_hasher


async def main(url: str, key: str, want: str) -> None:
    plans = PlanService(url, cache_ttl=3600)
    keys = KeyService(url, hasher=cheap_hasher(), cache_ttl=3600, plans=plans)
    try:
        first = await keys.verify(key)
        print("ready", first.rate_limits.get("read"), flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            principal = await keys.verify(key)
            if principal.rate_limits.get("read") == want:
                print(time.time(), flush=True)
                return
            await asyncio.sleep(0.005)
        print("timeout", flush=True)
    finally:
        await keys.aclose()
        await plans.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
