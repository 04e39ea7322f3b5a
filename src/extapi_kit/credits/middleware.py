"""CreditsMiddleware: spend a key's (and its owner's) credits per request (issue 20 §2).

Place it inside RateLimit and Usage (``build()`` does): a request refused by the per-minute
limits or by a quota never spends a credit. Each request of a metered key spends its route's
``cost`` (1 without a route) atomically; an empty balance answers ``402`` with the problem type
``https://extapi-kit.dev/problems/credits-exhausted``, and every answer to a metered key carries
``Credits-Remaining``. When the rate limiter and the credit store share one Redis, the rate
limiter spends the credits in its own script (one round trip, all or nothing) and this layer
only reads its decision. A store that fails refuses metered requests with 503 + ``Retry-After``
(``failure_mode="closed"``, the default): a store outage never turns into free, unlimited use.
"""

from __future__ import annotations

import logging
from typing import Any

from extapi_kit._asgi import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER, close_websocket
from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.context import SCOPE_KEY, get_context
from extapi_kit.credits.ledger import CreditDecision, CreditLedger, EventCallback
from extapi_kit.credits.models import FUSED
from extapi_kit.credits.store import CreditStore
from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.problems import send_problem

__all__ = ["DEFAULT_HEADER", "CreditsMiddleware"]

logger = logging.getLogger("extapi_kit.credits")

# No X- prefix (RFC 6648); not an item of the RateLimit fields either: their items reset after
# ``t`` seconds (draft-ietf-httpapi-ratelimit-headers), a balance never does.
DEFAULT_HEADER = "credits-remaining"


class CreditsMiddleware:
    """Spend credits per request and refuse with 402 when a balance cannot pay.

    Args:
        app: the ASGI app.
        ledger: a shared :class:`~extapi_kit.credits.CreditLedger` (the admin API's), or a
            :class:`~extapi_kit.credits.store.CreditStore` or URL to open one (closed by
            :meth:`aclose`).
        header: the response field carrying the remaining credits (None: not sent).
        failure_mode: when the store fails for a metered or unknown key: ``"closed"`` (503 with
            ``Retry-After``) or ``"open"`` (admitted, logged at WARNING each time).
        retry_after: seconds in ``Retry-After`` of the 503.
        low_threshold: for a ledger this layer opens (see :class:`CreditLedger`).
        on_event: for a ledger this layer opens (see :class:`CreditLedger`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ledger: CreditLedger | CreditStore | str = "memory://",
        header: str | None = DEFAULT_HEADER,
        failure_mode: str = "closed",
        retry_after: int = 1,
        low_threshold: int | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        if failure_mode not in ("open", "closed"):
            raise ConfigurationError(f"failure_mode must be 'open' or 'closed': {failure_mode!r}")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
            raise ConfigurationError(f"retry_after must be an integer >= 1: {retry_after!r}")
        self.app = app
        self._owns = not isinstance(ledger, CreditLedger)
        if isinstance(ledger, CreditLedger):
            if low_threshold is not None or on_event is not None:
                raise ConfigurationError(
                    "low_threshold= and on_event= belong to the CreditLedger you pass"
                )
            self.ledger = ledger
        else:
            options: dict[str, Any] = {"on_event": on_event}
            if low_threshold is not None:
                options["low_threshold"] = low_threshold
            self.ledger = CreditLedger(ledger, **options)
        self._header = header.lower().encode("latin-1") if header else None
        self._closed_on_failure = failure_mode == "closed"
        self._retry_after = str(retry_after).encode()

    def __repr__(self) -> str:
        return f"CreditsMiddleware(ledger={self.ledger!r})"

    async def aclose(self) -> None:
        """Close the ledger if this layer opened it (``build()`` calls it at shutdown)."""
        if self._owns:
            await self.ledger.aclose()
        else:
            await self.ledger.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        ctx = scope.get(SCOPE_KEY) or get_context(scope)
        principal = ctx.principal
        if principal is None:
            await self.app(scope, receive, send)
            return
        route = ctx.route
        cost = 1 if route is None else (route.cost if route.cost > 0 else 0)
        extra = ctx.extra
        decision: CreditDecision | None
        if FUSED in extra:  # the rate limiter spent them in its Redis script
            decision = extra.pop(FUSED)
        else:
            try:
                decision = await self.ledger.spend(principal.key_id, principal.owner, cost)
            except StoreError as exc:
                if self._closed_on_failure:
                    await self._unavailable(scope, send, kind, exc)
                    return
                logger.warning(
                    "credit store failed, admitting key %s uncharged: %s", principal.key_id, exc
                )
                decision = None
        if decision is None:
            await self.app(scope, receive, send)
            return
        extra["credits_remaining"] = decision.remaining
        if not decision.allowed:
            await self._reject(scope, send, kind, decision)
            return
        header = self._header
        if header is None:
            await self.app(scope, receive, send)
            return
        field = (header, str(decision.remaining).encode())
        start = "http.response.start" if kind == "http" else "websocket.accept"

        async def send_with_field(message: Message) -> None:
            if message["type"] == start:
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), field]
            await send(message)

        await self.app(scope, receive, send_with_field)

    async def _reject(self, scope: Scope, send: Send, kind: str, decision: CreditDecision) -> None:
        if kind == "websocket":
            get_context(scope).rejection = "credits-exhausted"
            await close_websocket(send, WS_POLICY_VIOLATION, "credits exhausted")
            return
        headers = [(self._header, str(decision.remaining).encode())] if self._header else []
        by = decision.refused_by()
        whose = "owner's" if by == ["owner"] else "key's"
        # No Retry-After: the balance does not refill by itself, only a top-up helps.
        await send_problem(
            send,
            "credits-exhausted",
            f"The {whose} credit balance ({decision.remaining}) cannot pay this request "
            f"(cost {decision.cost}); top up to continue.",
            headers=headers,
            scope=scope,
            extensions={
                "credits-remaining": decision.remaining,
                "cost": decision.cost,
                "balance": by[0] if by else "key",
            },
        )

    async def _unavailable(self, scope: Scope, send: Send, kind: str, exc: Exception) -> None:
        # The store's message may name its address: the log gets it, the client does not.
        logger.warning("credit store failed, refusing with 503: %s", exc)
        if kind == "websocket":
            get_context(scope).rejection = "service-unavailable"
            await close_websocket(send, WS_TRY_AGAIN_LATER, "credit store unavailable")
            return
        await send_problem(
            send,
            "service-unavailable",
            "Credits cannot be checked right now; try again shortly.",
            headers=[(b"retry-after", self._retry_after)],
            scope=scope,
        )
