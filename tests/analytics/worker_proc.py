"""A worker process for test_processes.py: fold and flush audit records for one key."""

from __future__ import annotations

import asyncio
import sys
import time

from extapi_kit.analytics import KeyActivity
from extapi_kit.audit.record import AuditRecord
from extapi_kit.exceptions import ExtAPIKitError


async def main(url: str, tag: str, rounds: int) -> None:
    activity = KeyActivity(url)
    now = time.time()
    for i in range(rounds):
        rec = AuditRecord(
            timestamp_us=int(now * 1e6),
            request_id="r",
            method="GET",
            path="/x",
            status=200,
            key_id="shared",
            client_ip=f"10.{tag}.0.{i % 20}",
        )
        await activity.write_batch([rec, rec])
        await _flush(activity)
    while activity.pending_keys:  # a failed write stays pending (merged) until one succeeds
        await _flush(activity)
    await activity.aclose()


async def _flush(activity: KeyActivity) -> None:
    try:
        await activity.flush()
    except ExtAPIKitError:  # e.g. SQLite busy past its timeout on a loaded box: retried
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
