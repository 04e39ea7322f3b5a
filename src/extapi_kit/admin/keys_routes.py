"""Admin routes for API keys: create (secret once), list, show, update, rotate, revoke."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from extapi_kit._types import Clock
from extapi_kit.admin._common import epoch, guarded, key_out
from extapi_kit.admin.models import (
    KeyCreate,
    KeyCreated,
    KeyListQuery,
    KeyOut,
    KeyUpdate,
    RotateRequest,
)
from extapi_kit.exceptions import PermissionDeniedError
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.service import KeyService
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.pagination import Page

__all__ = ["add_key_routes"]

_TAGS = ("keys",)


def add_key_routes(
    api: ExternalAPI, keys: KeyService, *, scopes: Sequence[str], clock: Clock
) -> None:
    """Declare the ``/keys`` routes on the admin registry.

    Args:
        api: the admin registry.
        keys: the key service the routes manage.
        scopes: scopes every route requires.
        clock: returns epoch seconds (key status).
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS, "idempotent": False}

    async def acting(req: HandlerRequest) -> KeyRecord:
        # A14: whatever the admin API creates, changes or rotates stays within the calling key.
        if req.principal is None:
            raise PermissionDeniedError("the admin API needs the calling key")
        return await keys.get(req.principal.key_id)

    @api.post(
        "/keys",
        request_model=KeyCreate,
        response_model=KeyCreated,
        status_code=201,
        summary="Create a key (the secret is in this answer only)",
        **common,
    )
    @guarded
    async def create_key(req: HandlerRequest) -> KeyCreated:
        body: KeyCreate = req.body
        record, secret = await keys.create(
            body.name,
            env=body.env,
            description=body.description,
            owner=body.owner,
            scopes=body.scopes,
            grants=body.grants,
            rate_limits=body.rate_limits,
            allowed_cidrs=body.allowed_cidrs,
            quota=body.quota,
            metadata=body.metadata,
            expires_at=epoch(body.expires_at),
            expires_in=body.expires_in,
            within=await acting(req),
            plan=body.plan,
        )
        return KeyCreated(key=key_out(record, clock()), secret=secret)

    @api.get(
        "/keys",
        query_model=KeyListQuery,
        response_model=Page[KeyOut],
        summary="List keys (cursor pages)",
        **common,
    )
    @guarded
    async def list_keys(req: HandlerRequest) -> Page[KeyOut]:
        q: KeyListQuery = req.query
        records, cursor = await keys.list(
            owner=q.owner, env=q.env, status=q.status, cursor=q.cursor, limit=q.limit
        )
        now = clock()
        return Page[KeyOut](
            data=[key_out(r, now) for r in records], next_cursor=cursor, has_more=cursor is not None
        )

    @api.get("/keys/{key_id}", response_model=KeyOut, summary="Show a key", **common)
    @guarded
    async def show_key(req: HandlerRequest) -> KeyOut:
        return key_out(await keys.get(req.path_params["key_id"]), clock())

    @api.patch(
        "/keys/{key_id}",
        request_model=KeyUpdate,
        response_model=KeyOut,
        summary="Change a key's name, scopes, grants, limits, networks or expiry",
        **common,
    )
    @guarded
    async def update_key(req: HandlerRequest) -> KeyOut:
        body: BaseModel = req.body
        changes: dict[str, Any] = {n: getattr(body, n) for n in body.model_fields_set}
        if "expires_at" in changes:
            changes["expires_at"] = epoch(changes["expires_at"])
        if "allowed_cidrs" in changes and changes["allowed_cidrs"] is None:
            changes["allowed_cidrs"] = ()
        for name in ("name", "description", "scopes"):
            if name in changes and changes[name] is None:
                del changes[name]  # these cannot be "cleared"; null means "unchanged"
        record = await keys.update(req.path_params["key_id"], within=await acting(req), **changes)
        return key_out(record, clock())

    @api.post(
        "/keys/{key_id}/rotate",
        request_model=RotateRequest,
        response_model=KeyCreated,
        status_code=201,
        summary="Rotate a key; the old one keeps working for the grace period",
        **common,
    )
    @guarded
    async def rotate_key(req: HandlerRequest) -> KeyCreated:
        old_id = req.path_params["key_id"]
        grace = req.body.grace if req.body is not None else 0
        record, secret = await keys.rotate(old_id, grace=grace, within=await acting(req))
        return KeyCreated(key=key_out(record, clock()), secret=secret, rotated_from=old_id)

    @api.post(
        "/keys/{key_id}/revoke",
        response_model=KeyOut,
        summary="Revoke a key now (idempotent)",
        **common,
    )
    @guarded
    async def revoke_key(req: HandlerRequest) -> KeyOut:
        return key_out(await keys.revoke(req.path_params["key_id"]), clock())
