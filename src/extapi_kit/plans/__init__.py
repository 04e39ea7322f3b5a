"""Plans (tiers): named bundles of rate limits, quotas, a scope ceiling and a body limit.

A key is on a plan through its own ``plan`` field or its owner's assignment; its own settings win.
A plan change reaches every key on it at runtime (see :mod:`extapi_kit.plans.service`).
"""

from __future__ import annotations

from extapi_kit.plans.models import Plan, UnknownPlanError, apply_plan, within_ceiling
from extapi_kit.plans.service import PlanService
from extapi_kit.plans.store import PlanStore

__all__ = ["Plan", "PlanService", "PlanStore", "UnknownPlanError", "apply_plan", "within_ceiling"]
