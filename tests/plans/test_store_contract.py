"""The plan store contract, on every backend (memory, SQLite, Redis, Redis Cluster, PostgreSQL)."""

from __future__ import annotations

import pytest

from extapi_kit.exceptions import ConflictError, NotFoundError
from extapi_kit.plans import Plan, PlanStore
from extapi_kit.stores import store_from_url

pytestmark = pytest.mark.anyio


async def test_plan_store_contract(any_contract_store_url: str) -> None:
    """Create, read, list, replace, delete plans and owner assignments; every change is
    announced to watchers; duplicates conflict and missing plans are not found."""
    store: PlanStore = store_from_url("plans", any_contract_store_url)
    seen: list[str] = []
    try:
        assert await store.ping()
        await store.watch(seen.append)  # type: ignore[attr-defined]
        pro = Plan.build("pro", rate_limits={"read": "1000/minute"}, scopes=["projects:*"])
        free = Plan.build("free", quota={"daily": 100}, body_limit="1MiB")
        await store.create(pro)
        await store.create(free)
        with pytest.raises(ConflictError):
            await store.create(pro)
        assert await store.get("pro") == pro
        assert await store.get("nope") is None
        assert [p.name for p in await store.list()] == ["free", "pro"]
        assert (await store.get("free")) == free and free.body_limit == 1024 * 1024
        changed = Plan.build("pro", rate_limits={"read": "5/minute"}, scopes=None)
        await store.update(changed)
        assert await store.get("pro") == changed
        with pytest.raises(NotFoundError):
            await store.update(Plan.build("gold"))
        await store.set_owner("acme", "pro")
        await store.set_owner("beta", "free")
        assert await store.get_owner("acme") == "pro"
        assert await store.owners() == {"acme": "pro", "beta": "free"}
        assert await store.owners("free") == {"beta": "free"}
        await store.set_owner("acme", "free")
        await store.set_owner("beta", None)
        assert await store.owners() == {"acme": "free"}
        assert await store.get_owner("beta") is None
        assert await store.delete("pro") is True
        assert await store.delete("pro") is False
        assert await store.get("pro") is None
        assert "pro" in seen and "owner:acme" in seen and "owner:beta" in seen
    finally:
        await store.aclose()
