"""Admin routes for plans (tiers): create, list, show, change, delete; owner assignment.

A change answers once the store holds it; every key on the plan follows at runtime (this process
at once; others within the key cache TTL, or within a second on Redis and PostgreSQL). Deleting a
plan that keys or owners are on is a 409 problem naming some of them; an unknown plan named by a
key or an owner is a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from extapi_kit.admin._common import guarded
from extapi_kit.plans.service import PlanService, plan_out
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["OwnerPlan", "PlanCreate", "PlanList", "PlanOut", "PlanUpdate", "add_plan_routes"]

_TAGS = ("plans",)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanOut(BaseModel):
    """A plan as operators see it, with the policy names its keys' headers carry."""

    name: str
    description: str = ""
    rate_limits: dict[str, str] = {}
    quota: dict[str, int] = {}
    scopes: list[str] | None = None
    body_limit: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    policy_names: dict[str, str] = {}
    owners: list[str] | None = None


class PlanList(BaseModel):
    """Every plan, by name."""

    data: list[PlanOut]


class PlanCreate(_In):
    """Body of ``POST /plans``."""

    name: str = Field(min_length=1, max_length=40)
    description: str = ""
    rate_limits: dict[str, str] | None = Field(None, description="class -> '1000/minute'")
    quota: dict[str, int] | None = Field(None, description="{'daily': N} and/or {'monthly': N}")
    scopes: list[str] | None = Field(None, description="the scope ceiling; null: no ceiling")
    body_limit: int | str | None = Field(None, description="bytes or '1MiB'; null: none")


class PlanUpdate(_In):
    """Body of ``PATCH /plans/{name}``: only the fields sent change (null clears)."""

    description: str | None = None
    rate_limits: dict[str, str] | None = None
    quota: dict[str, int] | None = None
    scopes: list[str] | None = None
    body_limit: int | str | None = None


class OwnerPlan(_In):
    """An owner's plan assignment (``plan`` null: the owner is on no plan)."""

    owner: str | None = None
    plan: str | None = None


def add_plan_routes(api: ExternalAPI, plans: PlanService, *, scopes: Sequence[str]) -> None:
    """Declare the ``/plans`` and ``/owners/{owner}/plan`` routes on the admin registry.

    Args:
        api: the admin registry.
        plans: the plan service.
        scopes: scopes every route requires.
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS, "idempotent": False}

    @api.get("/plans", response_model=PlanList, summary="List plans", **common)
    @guarded
    async def list_plans(req: HandlerRequest) -> PlanList:
        return PlanList(data=[PlanOut(**plan_out(p)) for p in await plans.list()])

    @api.post(
        "/plans",
        request_model=PlanCreate,
        response_model=PlanOut,
        status_code=201,
        summary="Create a plan",
        **common,
    )
    @guarded
    async def create_plan(req: HandlerRequest) -> PlanOut:
        body: PlanCreate = req.body
        plan = await plans.create(
            body.name,
            description=body.description,
            rate_limits=body.rate_limits,
            quota=body.quota,
            scopes=body.scopes,
            body_limit=body.body_limit,
        )
        return PlanOut(**plan_out(plan))

    @api.get("/plans/{name}", response_model=PlanOut, summary="Show a plan", **common)
    @guarded
    async def show_plan(req: HandlerRequest) -> PlanOut:
        name = req.path_params["name"]
        plan = await plans.get(name)
        return PlanOut(**plan_out(plan), owners=sorted(await plans.owners(name)))

    @api.patch(
        "/plans/{name}",
        request_model=PlanUpdate,
        response_model=PlanOut,
        summary="Change a plan; every key on it follows at runtime",
        **common,
    )
    @guarded
    async def update_plan(req: HandlerRequest) -> PlanOut:
        body: PlanUpdate = req.body
        changes = {n: getattr(body, n) for n in body.model_fields_set}
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        plan = await plans.update(req.path_params["name"], **changes)
        return PlanOut(**plan_out(plan))

    @api.delete(
        "/plans/{name}", summary="Delete a plan no key or owner is on (409 otherwise)", **common
    )
    @guarded
    async def delete_plan(req: HandlerRequest) -> None:
        await plans.delete(req.path_params["name"])

    @api.get(
        "/owners/{owner}/plan", response_model=OwnerPlan, summary="Show an owner's plan", **common
    )
    @guarded
    async def show_owner_plan(req: HandlerRequest) -> OwnerPlan:
        owner = req.path_params["owner"]
        return OwnerPlan(owner=owner, plan=await plans.owner_plan_now(owner))

    @api.put(
        "/owners/{owner}/plan",
        request_model=OwnerPlan,
        response_model=OwnerPlan,
        summary="Put an owner on a plan (null: none); its keys without a plan follow",
        **common,
    )
    @guarded
    async def assign_owner_plan(req: HandlerRequest) -> OwnerPlan:
        owner = req.path_params["owner"]
        body: OwnerPlan = req.body
        await plans.assign_owner(owner, body.plan)
        return OwnerPlan(owner=owner, plan=body.plan)
