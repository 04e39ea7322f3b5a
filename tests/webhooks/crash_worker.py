"""A dispatcher process for the crash test (W8): ``python -m tests.webhooks.crash_worker URL``.

It runs until SIGTERM (graceful) or until the test kills it with SIGKILL at a random moment, which
may fall between claim, send and ack. Short leases let the next worker take over quickly.
"""

from __future__ import annotations

import asyncio
import signal
import sys

# A SIGTERM that arrives while the process is still starting (before run_forever installs its
# own handler, which then takes over) is a graceful stop too: nothing has been claimed yet.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)  # the test sends signals only after this line

from extapi_kit.webhooks import WebhookDispatcher, webhook_store_from_url  # noqa: E402
from extapi_kit.webhooks.retry import RetryPolicy  # noqa: E402


async def main(url: str) -> None:
    store = webhook_store_from_url(url)
    dispatcher = WebhookDispatcher(
        store,
        allow_loopback=True,
        lease_seconds=1.0,
        poll_interval=0.05,
        concurrency=16,
        per_endpoint_concurrency=16,
        retry=RetryPolicy([0, 0.2, 0.5, 1, 1, 1, 1, 1, 1, 1], jitter=0),
    )
    try:
        await dispatcher.run_forever()
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
