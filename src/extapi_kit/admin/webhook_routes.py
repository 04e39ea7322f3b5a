"""Admin routes for webhooks: endpoints CRUD, secret rotation, test ping, deliveries, replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extapi_kit._units import parse_duration
from extapi_kit.admin._common import endpoint_out, epoch, guarded
from extapi_kit.admin.models import (
    DeliveryQuery,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointUpdate,
    ReplayFailed,
    SecretOut,
)
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.routing.pagination import Page
from extapi_kit.webhooks._validation import check_grace

if TYPE_CHECKING:
    from extapi_kit.webhooks.manage import WebhookManager

__all__ = ["add_webhook_routes"]

_TAGS = ("webhooks",)


class SecretRotation(BaseModel):
    """Body of a secret rotation: how long the old secrets keep signing (at most 30 days)."""

    model_config = ConfigDict(extra="forbid")

    grace: str | float = Field(0, description="seconds or '24h' (at most 30 days); 0 ends now")

    @field_validator("grace")
    @classmethod
    def _bounded(cls, value: str | float) -> float:
        # Parsed and bounded here so a 1e308 grace is a 422 naming the field (M10).
        return check_grace(parse_duration(value))


class TestOut(BaseModel):
    """What the endpoint answered to a test ping."""

    __test__ = False  # not a pytest test class

    ok: bool
    status: int | None = None
    error: str | None = None
    duration: float
    response_excerpt: str = ""


class DeliveryOut(BaseModel):
    """One delivery (an event to an endpoint); its id is the ``webhook-id`` receivers see."""

    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str | None = None
    test: bool = Field(False, description="a test ping sent from the console or the CLI")


class AttemptOut(BaseModel):
    """One HTTP attempt of a delivery."""

    delivery_id: str
    time: float
    duration: float
    status: int | None = None
    response_excerpt: str = ""
    error: str | None = None
    manual: bool = False


class ReplayCount(BaseModel):
    """How many deliveries a bulk replay requeued."""

    requeued: int


def add_webhook_routes(api: ExternalAPI, manager: WebhookManager, *, scopes: Sequence[str]) -> None:
    """Declare the ``/webhooks`` routes on the admin registry.

    Args:
        api: the admin registry.
        manager: a :class:`~extapi_kit.webhooks.manage.WebhookManager`.
        scopes: scopes every route requires.
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS, "idempotent": False}
    ep = "/webhooks/endpoints/{endpoint_id}"

    @api.get("/webhooks/endpoints", response_model=Page[EndpointOut], **common)
    @guarded
    async def list_endpoints(req: HandlerRequest) -> Page[EndpointOut]:
        endpoints = await manager.list_endpoints()
        return Page[EndpointOut](data=[endpoint_out(e) for e in endpoints])

    @api.post(
        "/webhooks/endpoints",
        request_model=EndpointCreate,
        response_model=EndpointCreated,
        status_code=201,
        summary="Add an endpoint (its signing secret is in this answer only)",
        **common,
    )
    @guarded
    async def add_endpoint(req: HandlerRequest) -> EndpointCreated:
        body: EndpointCreate = req.body
        endpoint = await manager.add_endpoint(
            body.url,
            event_types=body.event_types,
            description=body.description,
            rate_limit=body.rate_limit,
            max_concurrency=body.max_concurrency,
            metadata=body.metadata,
            owner=body.owner,
            grants=body.grants,
            key_id=body.key_id,
        )
        return EndpointCreated(endpoint=endpoint_out(endpoint), secret=endpoint.secrets[0].value)

    @api.get(ep, response_model=EndpointOut, **common)
    @guarded
    async def show_endpoint(req: HandlerRequest) -> EndpointOut:
        return endpoint_out(await manager.get_endpoint(req.path_params["endpoint_id"]))

    @api.patch(ep, request_model=EndpointUpdate, response_model=EndpointOut, **common)
    @guarded
    async def update_endpoint(req: HandlerRequest) -> EndpointOut:
        body: BaseModel = req.body
        changes = {n: getattr(body, n) for n in body.model_fields_set}
        endpoint = await manager.update_endpoint(req.path_params["endpoint_id"], **changes)
        return endpoint_out(endpoint)

    @api.delete(ep, summary="Remove an endpoint (pending deliveries are cancelled)", **common)
    @guarded
    async def remove_endpoint(req: HandlerRequest) -> None:
        await manager.remove_endpoint(req.path_params["endpoint_id"])

    @api.post(
        ep + "/rotate-secret",
        request_model=SecretRotation,
        response_model=SecretOut,
        summary="Add a new signing secret; old ones keep signing for the grace period",
        **common,
    )
    @guarded
    async def rotate_secret(req: HandlerRequest) -> SecretOut:
        body: SecretRotation = req.body
        grace = float(body.grace)  # a number once validated
        secret = await manager.rotate_secret(req.path_params["endpoint_id"], grace=grace)
        return SecretOut(secret=secret)

    @api.post(ep + "/test", response_model=TestOut, summary="Send a signed test ping", **common)
    @guarded
    async def test_endpoint(req: HandlerRequest) -> TestOut:
        result = await manager.send_test(req.path_params["endpoint_id"])
        return TestOut.model_validate(result, from_attributes=True)

    @api.post(
        ep + "/replay",
        request_model=ReplayFailed,
        response_model=ReplayCount,
        summary="Requeue the endpoint's failed deliveries since a time (paced)",
        **common,
    )
    @guarded
    async def replay_failed(req: HandlerRequest) -> ReplayCount:
        since = epoch(req.body.since) or 0.0
        n = await manager.replay_failed(req.path_params["endpoint_id"], since=since)
        return ReplayCount(requeued=n)

    @api.get(
        "/webhooks/deliveries",
        query_model=DeliveryQuery,
        response_model=Page[DeliveryOut],
        summary="List deliveries, oldest first",
        **common,
    )
    @guarded
    async def list_deliveries(req: HandlerRequest) -> Page[DeliveryOut]:
        q: DeliveryQuery = req.query
        rows = await manager.deliveries(
            endpoint_id=q.endpoint_id, status=q.status, since=epoch(q.since), limit=q.limit
        )
        return Page[DeliveryOut](data=[DeliveryOut.model_validate(d.model_dump()) for d in rows])

    @api.get(
        "/webhooks/deliveries/{delivery_id}/attempts",
        response_model=Page[AttemptOut],
        summary="A delivery's attempts, oldest first",
        **common,
    )
    @guarded
    async def list_attempts(req: HandlerRequest) -> Page[AttemptOut]:
        rows = await manager.attempts(req.path_params["delivery_id"])
        return Page[AttemptOut](data=[AttemptOut.model_validate(a.model_dump()) for a in rows])

    @api.post(
        "/webhooks/deliveries/{delivery_id}/replay",
        response_model=DeliveryOut,
        summary="Send one delivery again now (same webhook-id)",
        **common,
    )
    @guarded
    async def replay_delivery(req: HandlerRequest) -> DeliveryOut:
        delivery = await manager.replay_delivery(req.path_params["delivery_id"])
        return DeliveryOut.model_validate(delivery.model_dump())
