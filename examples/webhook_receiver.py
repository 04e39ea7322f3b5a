"""A webhook receiver that verifies Standard Webhooks signatures and drops duplicates.

Run it::

    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py      # listens on 127.0.0.1:8001

``WEBHOOK_SECRET`` may hold several secrets separated by spaces while the sender rotates its
secret. Deliveries are at least once: a retry or a replay carries the same ``webhook-id``, so the
receiver remembers the ids it has processed (here in a bounded in-memory set; use Redis or your
database in production, kept at least as long as the sender's retry horizon plus replay window).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit.exceptions import WebhookVerificationError
from extapi_kit.webhooks.signing import verify

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class SeenIds:
    """A bounded set of recently processed ``webhook-id`` values (oldest forgotten first).

    Args:
        capacity: how many ids to remember.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def add(self, msg_id: str) -> None:
        """Remember an id.

        Args:
            msg_id: the ``webhook-id``.
        """
        self._ids[msg_id] = None
        self._ids.move_to_end(msg_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


async def _print_event(event: dict[str, Any]) -> None:
    print(f"received {event.get('type')}: {json.dumps(event.get('data'))[:200]}")


def create_app(
    secret: str | Sequence[str],
    *,
    handler: Handler = _print_event,
    tolerance: int = 300,
    remember: int = 100_000,
) -> Starlette:
    """Build the receiver app.

    Args:
        secret: the endpoint's ``whsec_`` secret, or several during a rotation.
        handler: called once per new event with the parsed JSON payload.
        tolerance: accepted clock difference for ``webhook-timestamp``, in seconds.
        remember: how many processed ``webhook-id`` values to keep for deduplication.
    """
    seen = SeenIds(remember)

    async def receive_webhook(request: Request) -> Response:
        body = await request.body()  # the raw bytes: never verify re-serialised JSON
        try:
            verify(body, request.headers, secret, tolerance=tolerance)
        except WebhookVerificationError:
            return JSONResponse({"error": "invalid signature"}, status_code=400)
        msg_id = request.headers["webhook-id"]
        if msg_id in seen:
            return JSONResponse({"duplicate": True}, status_code=200)
        try:
            event = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        await handler(event)
        seen.add(msg_id)  # only after success, so a failed handler gets the retry
        return Response(status_code=204)

    return Starlette(routes=[Route("/webhooks", receive_webhook, methods=["POST"])])


if __name__ == "__main__":
    import uvicorn

    secrets = os.environ["WEBHOOK_SECRET"].split()
    uvicorn.run(
        create_app(secrets),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8001")),
        proxy_headers=False,
    )
