"""Self-service webhook routes: integrators manage their own endpoints with their API key.

``add_self_service_routes(api, manager)`` declares, on a public :class:`ExternalAPI`::

    GET    /webhooks/endpoints                  list the caller's endpoints
    POST   /webhooks/endpoints                  register one (secret in this answer only)
    GET    /webhooks/endpoints/{endpoint_id}    show one
    DELETE /webhooks/endpoints/{endpoint_id}    remove one
    POST   /webhooks/endpoints/{endpoint_id}/rotate-secret
    GET    /webhooks/endpoints/{endpoint_id}/deliveries   the last 7 days, at most 100

An endpoint registered here belongs to the calling key (``key_id``) and its owner (tenant), and
copies the key's resource grants: with ``KeyGrants`` on the dispatcher it receives only events
about the key's resources, following later grant changes, rotation and revocation. A caller
sees and changes only endpoints of its own owner (or, for a key without owner, of its own key);
anybody else's is the same 404 as a missing one (case Z3). Of those, a key restricted to some
resources (``{"projects": ["1"]}``) sees and changes only endpoints whose grants are within its
own: not an org-wide endpoint of an unrestricted sibling key (case Z9). The endpoint cap counts
every endpoint of the owner.

What a self-service endpoint receives is limited by ``scoping.audience_allows`` (case Z8):
events about its own owner (``api_key.*``) or about resources within its grants, never another
owner's events nor operator-wide ones.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from extapi_kit.context import Principal
from extapi_kit.exceptions import ConfigurationError, NotFoundError, ProblemError, UnsafeURLError
from extapi_kit.keys.privilege import grants_within
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from extapi_kit.webhooks._validation import URLField
from extapi_kit.webhooks.api_models import ONCE_WARNING, SecretOut
from extapi_kit.webhooks.manage import WebhookManager
from extapi_kit.webhooks.models import Endpoint

__all__ = ["SelfServiceEndpoint", "add_self_service_routes"]


class SelfServiceEndpoint(BaseModel):
    """An endpoint as its integrator sees it (no secrets, no operator fields)."""

    id: str
    url: str
    description: str = ""
    event_types: list[str] = []
    enabled: bool = True
    disabled_reason: str | None = None
    grants: dict[str, list[str]] | None = None
    created_at: float


class EndpointRegistration(BaseModel):
    """Body of ``POST /webhooks/endpoints``."""

    model_config = ConfigDict(extra="forbid")

    url: URLField  # port 1-65535 checked here too, so the 422 names the field (W14)
    event_types: list[str] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=500)


class EndpointRegistered(BaseModel):
    """The answer to a registration: the signing secret, shown once."""

    endpoint: SelfServiceEndpoint
    secret: str
    warning: str = ONCE_WARNING


class DeliveryView(BaseModel):
    """One delivery of one event to the endpoint."""

    id: str
    event_id: str
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str | None = None


class EndpointList(BaseModel):
    """The caller's endpoints."""

    data: list[SelfServiceEndpoint]


class DeliveryList(BaseModel):
    """Recent deliveries of an endpoint, oldest first."""

    data: list[DeliveryView]


def _view(endpoint: Endpoint) -> SelfServiceEndpoint:
    return SelfServiceEndpoint.model_validate(endpoint.model_dump(exclude={"secrets"}))


def _same_tenant(endpoint: Endpoint, principal: Principal | None) -> bool:
    if principal is None:
        return False
    if principal.owner is not None:
        return endpoint.owner == principal.owner
    return endpoint.key_id == principal.key_id


def _mine(endpoint: Endpoint, principal: Principal | None) -> bool:
    # Z9: of its owner's endpoints, a key restricted to some resources manages only those whose
    # grants are within its own (an org-wide endpoint would leak every project's events to
    # whoever rotates its secret).
    if principal is None or not _same_tenant(endpoint, principal):
        return False
    return grants_within(principal.grants, endpoint.grants or {})


def _problems(fn: Callable[[HandlerRequest], Awaitable[Any]]) -> Any:
    @functools.wraps(fn)
    async def wrapper(req: HandlerRequest) -> Any:
        try:
            return await fn(req)
        except NotFoundError:
            raise ProblemError(PROBLEMS["not-found"]) from None
        except (ConfigurationError, UnsafeURLError) as exc:
            raise ProblemError(PROBLEMS["validation-error"], detail=str(exc)) from None

    return wrapper


def add_self_service_routes(
    api: ExternalAPI,
    manager: WebhookManager,
    *,
    read_scopes: Sequence[str] = ("webhooks:read",),
    write_scopes: Sequence[str] = ("webhooks:write",),
    path: str = "/webhooks/endpoints",
    max_endpoints: int = 10,
    tags: Sequence[str] = ("webhooks",),
) -> None:
    """Declare the self-service webhook routes on a public registry.

    Args:
        api: the public registry.
        manager: the webhook manager (its URL guard checks registered URLs).
        read_scopes: scopes needed to list and show endpoints and deliveries.
        write_scopes: scopes needed to register, remove and rotate.
        path: where the routes live inside the version.
        max_endpoints: endpoints one owner (or key) may have at most.
        tags: OpenAPI tags.
    """
    one = path + "/{endpoint_id}"
    read = {"scopes": tuple(read_scopes), "tags": tuple(tags)}
    write = {"scopes": tuple(write_scopes), "tags": tuple(tags)}

    async def owned(req: HandlerRequest) -> Endpoint:
        endpoint = await manager.get_endpoint(req.path_params["endpoint_id"])
        if not _mine(endpoint, req.principal):
            raise NotFoundError("not yours")  # the same answer as a missing endpoint
        return endpoint

    async def all_mine(principal: Principal | None) -> list[Endpoint]:
        return [e for e in await manager.list_endpoints() if _mine(e, principal)]

    async def tenant_count(principal: Principal) -> int:
        return sum(1 for e in await manager.list_endpoints() if _same_tenant(e, principal))

    @api.get(path, response_model=EndpointList, summary="List your webhook endpoints", **read)
    @_problems
    async def list_mine(req: HandlerRequest) -> EndpointList:
        return EndpointList(data=[_view(e) for e in await all_mine(req.principal)])

    @api.post(
        path,
        request_model=EndpointRegistration,
        response_model=EndpointRegistered,
        status_code=201,
        idempotent=False,
        summary="Register a webhook endpoint (its signing secret is in this answer only)",
        **write,
    )
    @_problems
    async def register(req: HandlerRequest) -> EndpointRegistered:
        if req.principal is None:
            raise NotFoundError("no key")
        if await tenant_count(req.principal) >= max_endpoints:
            raise ConfigurationError(f"at most {max_endpoints} endpoints; remove one first")
        body: EndpointRegistration = req.body
        endpoint = await manager.add_endpoint(
            body.url,
            event_types=body.event_types,
            description=body.description,
            principal=req.principal,
        )
        return EndpointRegistered(endpoint=_view(endpoint), secret=endpoint.secrets[0].value)

    @api.get(one, response_model=SelfServiceEndpoint, summary="Show a webhook endpoint", **read)
    @_problems
    async def show(req: HandlerRequest) -> SelfServiceEndpoint:
        return _view(await owned(req))

    @api.delete(one, status_code=204, summary="Remove a webhook endpoint", **write)
    @_problems
    async def remove(req: HandlerRequest) -> None:
        endpoint = await owned(req)
        await manager.remove_endpoint(endpoint.id)

    @api.post(
        one + "/rotate-secret",
        response_model=SecretOut,
        idempotent=False,
        summary="Rotate the signing secret (the old one keeps signing for 24 hours)",
        **write,
    )
    @_problems
    async def rotate(req: HandlerRequest) -> SecretOut:
        endpoint = await owned(req)
        return SecretOut(secret=await manager.rotate_secret(endpoint.id))

    @api.get(
        one + "/deliveries",
        response_model=DeliveryList,
        summary="Deliveries of the last 7 days (oldest first, at most 100)",
        **read,
    )
    @_problems
    async def deliveries(req: HandlerRequest) -> DeliveryList:
        endpoint = await owned(req)
        since = manager.clock() - 7 * 86400
        rows = await manager.deliveries(endpoint_id=endpoint.id, since=since, limit=100)
        return DeliveryList(data=[DeliveryView.model_validate(d.model_dump()) for d in rows])
