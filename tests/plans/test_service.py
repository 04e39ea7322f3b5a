"""PlanService and the key service together: precedence, owners, the scope ceiling (K3), errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.context import has_scope
from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys.service import KeyService
from extapi_kit.plans import Plan, PlanService, UnknownPlanError, within_ceiling
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio


def services() -> tuple[PlanService, KeyService]:
    plans = PlanService("memory://")
    return plans, KeyService("memory://", hasher=cheap_hasher(), plans=plans)


async def test_owner_plan_applies_to_keys_without_a_plan_and_a_key_plan_wins() -> None:
    """A key without a plan gets its owner's; a key with its own plan keeps it; without either
    the principal is unchanged."""
    plans, keys = services()
    await plans.create("free", rate_limits={"read": "5/minute"}, quota={"daily": 10})
    await plans.create("pro", rate_limits={"read": "500/minute"}, quota={"monthly": 9000})
    await plans.assign_owner("acme", "free")
    _, via_owner = await keys.create("a", owner="acme")
    _, own = await keys.create("b", owner="acme", plan="pro")
    _, none = await keys.create("c", owner="other")
    p = await keys.verify(via_owner)
    assert (p.plan, p.rate_limits, p.quota) == ("free", {"read": "5/minute"}, {"daily": 10})
    p = await keys.verify(own)
    assert (p.plan, p.rate_limits, p.quota) == ("pro", {"read": "500/minute"}, {"monthly": 9000})
    p = await keys.verify(none)
    assert (p.plan, dict(p.rate_limits), dict(p.quota)) == (None, {}, {})


async def test_key_quota_overrides_win_per_period() -> None:
    """A key's own quota for a period wins over its plan's; the plan's other period stays."""
    plans, keys = services()
    await plans.create("free", quota={"daily": 10, "monthly": 100})
    _, key = await keys.create("k", plan="free", quota={"daily": 50})
    assert (await keys.verify(key)).quota == {"daily": 50, "monthly": 100}


async def test_scopes_beyond_the_ceiling_are_refused_on_assignment() -> None:
    """K3: creating or moving a key onto a plan while it holds a scope outside the plan's
    ceiling is refused naming ``scopes``; nothing is stored."""
    plans, keys = services()
    await plans.create("free", scopes=["projects:read"])
    with pytest.raises(ConfigurationError, match=r"^scopes: 'projects:write'"):
        await keys.create("k", scopes=["projects:write"], plan="free")
    assert (await keys.list())[0] == []
    record, _ = await keys.create("k", scopes=["projects:write"])
    with pytest.raises(ConfigurationError, match=r"^scopes:"):
        await keys.update(record.id, plan="free")
    assert (await keys.get(record.id)).plan is None


async def test_ceiling_is_enforced_at_use_after_a_narrowing_and_an_owner_move() -> None:
    """K3: a plan narrowed after its keys were put on it, and an owner moved onto a smaller
    plan, bind at once: the key's principal holds only scopes both allow."""
    plans, keys = services()
    await plans.create("pro", scopes=["projects:*", "billing:read"])
    await plans.create("free", scopes=["projects:read"])
    _, key = await keys.create("k", owner="acme", scopes=["projects:*", "billing:read"], plan="pro")
    assert (await keys.verify(key)).has_scope("projects:write")
    await plans.update("pro", scopes=["projects:read"])
    p = await keys.verify(key)
    assert p.has_scope("projects:read")
    assert not p.has_scope("projects:write") and not p.has_scope("billing:read")
    _, owned = await keys.create("o", owner="acme", scopes=["projects:*"])
    assert (await keys.verify(owned)).has_scope("projects:write")
    await plans.assign_owner("acme", "free")
    assert not (await keys.verify(owned)).has_scope("projects:write")


async def test_a_missing_plan_grants_no_scope() -> None:
    """K3: a key whose owner's plan has vanished (deleted behind the service's back) keeps
    authenticating but holds no scope: without the plan its ceiling is unknown (fail closed)."""
    plans, keys = services()
    await plans.create("free", scopes=["projects:read"])
    await plans.assign_owner("acme", "free")
    _, key = await keys.create("k", owner="acme", scopes=["projects:read"])
    await plans.store.delete("free")  # the store, not the service: no in-use check
    p = await keys.verify(key)
    assert p.plan == "free" and p.scopes == frozenset()


async def test_unknown_plan_and_delete_in_use_are_refused() -> None:
    """K4: a key or owner naming an unknown plan is refused naming ``plan``; a plan a key or an
    owner is on cannot be deleted (ConflictError naming them); a free plan can."""
    plans, keys = services()
    await plans.create("free")
    with pytest.raises(UnknownPlanError, match=r"^plan: unknown plan 'gold'") as info:
        await keys.create("k", plan="gold")
    assert info.value.field == "plan"
    with pytest.raises(UnknownPlanError):
        await plans.assign_owner("acme", "gold")
    record, _ = await keys.create("k", plan="free")
    with pytest.raises(ConflictError, match=f"key:{record.id}"):
        await plans.delete("free")
    await keys.update(record.id, plan=None)
    await plans.assign_owner("acme", "free")
    with pytest.raises(ConflictError, match="owner:acme"):
        await plans.delete("free")
    await plans.assign_owner("acme", None)
    await plans.delete("free")
    with pytest.raises(NotFoundError):
        await plans.get("free")


async def test_plan_on_a_key_service_without_plans_is_refused() -> None:
    """A plan given to a key service that has no plans is refused, not stored and ignored."""
    keys = KeyService("memory://", hasher=cheap_hasher())
    with pytest.raises(ConfigurationError, match=r"^plan:"):
        await keys.create("k", plan="free")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Pro Plan", "name: invalid plan name"),
        ("rate_limits", {"read": "lots"}, "rate_limits.read"),
        ("quota", {"weekly": 5}, "quota.weekly"),
        ("scopes", ["Projects:Read"], "invalid scope"),
        ("body_limit", "huge", "body_limit"),
    ],
)
def test_plan_values_are_validated(field: str, value: object, message: str) -> None:
    """A plan value that would be stored and never enforced is refused naming the field."""
    args: dict[str, object] = {"name": "pro", field: value}
    name = args.pop("name")
    with pytest.raises(ConfigurationError, match=message):
        Plan.build(str(name), **args)  # type: ignore[arg-type]


_SEG = st.sampled_from(["a", "b", "admin"])
_SCOPE = st.lists(_SEG, min_size=1, max_size=3).map(":".join)
_GRANT = st.one_of(_SCOPE, _SCOPE.map(lambda s: s + ":*"), st.just("*"))


@given(
    granted=st.lists(_GRANT, max_size=4),
    ceiling=st.lists(_GRANT, max_size=4),
    required=_SCOPE,
)
def test_ceiling_intersection_holds_exactly_what_both_allow(
    granted: list[str], ceiling: list[str], required: str
) -> None:
    """K3: after the intersection a scope is held exactly when both the key's scopes and the
    plan's ceiling cover it (wildcards and reserved scopes included)."""
    both = has_scope(tuple(granted), required) and has_scope(tuple(ceiling), required)
    assert has_scope(within_ceiling(granted, ceiling), required) == both
