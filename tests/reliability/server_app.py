"""The full stack as a uvicorn app for process-fault, multi-worker and soak tests.

Run: ``uvicorn tests.reliability.server_app:app --lifespan on --no-proxy-headers``, configured by
environment variables (so ``--workers N`` works):

- ``EXTAPI_REL_KEYS``: key store URL (required).
- ``EXTAPI_REL_REDIS``: Redis URL for rate limits and idempotency (default: memory).
- ``EXTAPI_REL_AUDIT``: SQLite audit file (required).
- ``EXTAPI_REL_EFFECTS``: side-effects file of the write route (required).
- ``EXTAPI_REL_READ`` / ``EXTAPI_REL_WRITE``: rate limits (default ``1000/minute``).
- ``EXTAPI_REL_DEADLINE``: rate limiter deadline in seconds (default 0.25).
- ``EXTAPI_REL_STRATEGY``: rate-limit strategy (default ``sliding-window``).
- ``EXTAPI_REL_FAILURES_PER_IP``: failed auth attempts per IP per minute before 429 (default 50).

Every response carries ``x-worker-pid`` so a test can tell which worker answered; startup and
shutdown each append a line to ``<effects>.lifespan`` (proof that the lifespan ran, M5).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from tests.reliability.stack import build_stack, cheap_service, close_layers, record_effect

_PID = str(os.getpid()).encode()


class _Tagged:
    """Adds ``x-worker-pid`` to responses and records lifespan events."""

    def __init__(self, app: ASGIApp, effects: Path) -> None:
        self.app = app
        self.lifespan_log = Path(f"{effects}.lifespan")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-worker-pid", _PID)]}
            await send(message)

        await self.app(scope, receive, tagged)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                record_effect(self.lifespan_log, f"startup {os.getpid()}")
            if message["type"] == "lifespan.shutdown.complete":
                await close_layers(self.app)
                record_effect(self.lifespan_log, f"shutdown {os.getpid()}")
            await send(message)

        await self.app(scope, receive, spy)


def make_app() -> ASGIApp:
    """Build the tagged stack from the environment."""
    env = os.environ
    effects = Path(env["EXTAPI_REL_EFFECTS"])
    options: dict[str, Any] = {}
    if "EXTAPI_REL_DEADLINE" in env:
        options["rl_deadline"] = float(env["EXTAPI_REL_DEADLINE"])
    if "EXTAPI_REL_STRATEGY" in env:
        options["strategy"] = env["EXTAPI_REL_STRATEGY"]
    stack = build_stack(
        keys=cheap_service(
            env["EXTAPI_REL_KEYS"],
            cache_ttl=30,
            failures_per_ip=int(env.get("EXTAPI_REL_FAILURES_PER_IP", "50")),
        ),
        redis_url=env.get("EXTAPI_REL_REDIS") or None,
        audit_db=Path(env["EXTAPI_REL_AUDIT"]),
        effects=effects,
        read=env.get("EXTAPI_REL_READ", "1000/minute"),
        write=env.get("EXTAPI_REL_WRITE", "1000/minute"),
        **options,
    )
    return _Tagged(stack, effects)


app = make_app() if "EXTAPI_REL_KEYS" in os.environ else None
