"""Admin routes over credit balances: show, set, top up and clear a key's or an owner's credits.

Every change goes through :class:`~extapi_kit.credits.CreditLedger`, which writes the balance
and its log entry (actor: the calling admin key's id; the reason given) in one atomic step;
the admin stack's audit layer records the call itself as for every admin route. Setting or
topping up a balance re-arms the ``credits.exhausted`` notification.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from extapi_kit.admin._common import guarded
from extapi_kit.credits import CreditLedger
from extapi_kit.credits._logic import MAX_BALANCE
from extapi_kit.exceptions import ProblemError, StoreError
from extapi_kit.keys.service import KeyService
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["CreditChangeIn", "CreditEntryOut", "CreditsOut", "add_credit_routes"]

logger = logging.getLogger("extapi_kit.admin")

_TAGS = ("credits",)


class CreditSetIn(BaseModel):
    """Body of ``PUT .../credits``: the new balance."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=0, le=MAX_BALANCE, description="the new balance")
    reason: str | None = Field(None, max_length=500, description="recorded in the credits log")


class CreditChangeIn(BaseModel):
    """Body of ``POST .../credits/add``: credits to add (negative: take back, floor 0)."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=-MAX_BALANCE, le=MAX_BALANCE, description="credits to add, not 0")
    reason: str | None = Field(None, max_length=500, description="recorded in the credits log")


class CreditEntryOut(BaseModel):
    """One change of a balance, from the credits log."""

    at: float = Field(description="epoch seconds")
    action: str = Field(description="set, add or clear")
    amount: int
    before: int | None
    after: int | None
    actor: str = Field(description="the admin key id (or 'cli') that made the change")
    reason: str | None = None


class CreditsOut(BaseModel):
    """A key's or an owner's credit balance and its latest changes."""

    scope: str = Field(description="key or owner")
    id: str
    metered: bool = Field(description="false: no balance, not limited by credits")
    remaining: int | None
    history: list[CreditEntryOut]


def _unavailable(exc: StoreError) -> ProblemError:
    # The store's message may name its address, so it goes to the log only.
    logger.warning("credit store failed: %s", exc)
    return ProblemError(PROBLEMS["service-unavailable"], detail="The credit store is unavailable.")


async def _view(ledger: CreditLedger, scope: str, ident: str) -> CreditsOut:
    who: dict[str, Any] = {"key_id": ident} if scope == "key" else {"owner": ident}
    try:
        remaining = await ledger.balance(**who)
        log = await ledger.history(**who, limit=20)
    except StoreError as exc:
        raise _unavailable(exc) from None
    history = [
        CreditEntryOut(
            at=e.at,
            action=e.action,
            amount=e.amount,
            before=e.before,
            after=e.after,
            actor=e.actor,
            reason=e.reason,
        )
        for e in log
    ]
    return CreditsOut(
        scope=scope, id=ident, metered=remaining is not None, remaining=remaining, history=history
    )


def add_credit_routes(
    api: ExternalAPI, ledger: CreditLedger, keys: KeyService, *, scopes: Sequence[str]
) -> None:
    """Declare ``/keys/{key_id}/credits`` and ``/owners/{owner}/credits`` on the admin registry.

    Args:
        api: the admin registry.
        ledger: the credit ledger (share the one your API stack spends from).
        keys: the key service (a key must exist to get credits).
        scopes: scopes every route requires.
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS, "idempotent": False}

    async def subject(req: HandlerRequest) -> tuple[str, str]:
        if "key_id" in req.path_params:
            record = await keys.get(req.path_params["key_id"])
            return "key", record.id
        return "owner", req.path_params["owner"]

    def actor(req: HandlerRequest) -> str:
        return req.principal.key_id if req.principal is not None else "admin"

    async def change(req: HandlerRequest, action: str) -> CreditsOut:
        scope, ident = await subject(req)
        who: dict[str, Any] = {"key_id": ident} if scope == "key" else {"owner": ident}
        body = req.body
        try:
            if action == "set":
                await ledger.set(body.amount, actor=actor(req), reason=body.reason, **who)
            elif action == "add":
                await ledger.add(body.amount, actor=actor(req), reason=body.reason, **who)
            else:
                await ledger.clear(actor=actor(req), **who)
        except StoreError as exc:
            raise _unavailable(exc) from None
        return await _view(ledger, scope, ident)

    for base, what in (
        ("/keys/{key_id}/credits", "a key"),
        ("/owners/{owner}/credits", "an owner"),
    ):

        @api.get(
            base,
            response_model=CreditsOut,
            summary=f"The credit balance of {what} and its latest changes",
            **common,
        )
        @guarded
        async def show(req: HandlerRequest) -> CreditsOut:
            scope, ident = await subject(req)
            return await _view(ledger, scope, ident)

        @api.put(
            base,
            request_model=CreditSetIn,
            response_model=CreditsOut,
            summary=f"Set the credit balance of {what} (logged; re-arms credits.exhausted)",
            **common,
        )
        @guarded
        async def set_balance(req: HandlerRequest) -> CreditsOut:
            return await change(req, "set")

        @api.post(
            base + "/add",
            request_model=CreditChangeIn,
            response_model=CreditsOut,
            summary=f"Top up the credit balance of {what} (logged; re-arms credits.exhausted)",
            **common,
        )
        @guarded
        async def add_credits(req: HandlerRequest) -> CreditsOut:
            return await change(req, "add")

        @api.delete(
            base,
            response_model=CreditsOut,
            summary=f"Remove the credit balance of {what}: no longer limited by credits",
            **common,
        )
        @guarded
        async def clear_balance(req: HandlerRequest) -> CreditsOut:
            return await change(req, "clear")
