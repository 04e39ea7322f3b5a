"""Per-key rate limiting with read/write classes, standard headers and a defined failure policy.

Place it after authentication (DESIGN §3) so it keys on the verified key id; unauthenticated
requests are keyed by the resolved client IP (never a header the client controls). The decision
comes from one atomic hit over every window that applies (never test-then-hit, case L2); the
answer's figures go into ``RateLimit-Policy``/``RateLimit`` (IETF draft -10/-11) and, switchable,
``X-RateLimit-*`` on every response, 2xx and 429. See docs/rate-limiting.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from math import ceil
from typing import TYPE_CHECKING, Any

from extapi_kit import telemetry
from extapi_kit._asgi import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER, close_websocket
from extapi_kit._types import ASGIApp, Clock, Message, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import RateLimitInfo, get_context
from extapi_kit.exceptions import ConfigurationError, StoreUnavailableError
from extapi_kit.problems import send_problem
from extapi_kit.ratelimit._headers import Plan, render
from extapi_kit.ratelimit._result import strategy_code
from extapi_kit.ratelimit.backends import make_backend
from extapi_kit.ratelimit.fallback import DEFAULT_PROBE_INTERVAL
from extapi_kit.ratelimit.policy import (
    OverrideCache,
    RateLimitRule,
    RatePolicy,
    compile_rules,
)
from extapi_kit.ratelimit.workers import detect_workers

if TYPE_CHECKING:
    from extapi_kit.credits.ledger import CreditLedger
    from extapi_kit.usage.quota import QuotaPlan
    from extapi_kit.usage.tracker import UsageTracker

__all__ = ["RateLimitMiddleware"]

logger = logging.getLogger("extapi_kit.ratelimit")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PolicySpec = str | Sequence[str] | RatePolicy
OnReject = Callable[[Scope, RateLimitInfo], ASGIApp | None]


class RateLimitMiddleware:
    """Rate-limit requests per API key (or client IP) with named, multi-window policies.

    Args:
        app: the ASGI app to protect.
        storage: ``"memory://"`` (in process), ``"redis://host:6379/0"``/``"rediss://..."``,
            an ``async+...://`` ``limits`` URL, or a ``limits.aio`` storage instance.
        read: the read class budget (GET, HEAD, OPTIONS).
        write: the write class budget (every other method).
        policies: more named classes (name -> ``"10/minute"``, list, or :class:`RatePolicy`),
            for rules and route settings to refer to; may also redefine ``read``/``write``.
        strategy: ``"sliding-window"`` (default), ``"fixed-window"`` or ``"moving-window"``.
        rules: per-path overrides (:class:`RateLimitRule` list, or path -> class name / cost).
        per_owner: a budget shared by all keys of one owner/tenant (``Principal.owner``).
        exempt_paths: paths (and everything below them) that are never limited.
        exempt_scopes: a key holding any of these scopes is never limited.
        failure_mode: ``"open"`` (in-process fallback) or ``"closed"`` (503) when a shared
            storage fails or misses the deadline.
        deadline: seconds a shared-storage decision may take.
        fallback_divisor: the fallback admits ``limit // fallback_divisor``; default: the
            detected worker count (1 if none detected).
        probe_interval: seconds between attempts to reach a failing storage.
        legacy_headers: also send ``X-RateLimit-Limit/-Remaining/-Reset``.
        ietf_headers: send ``RateLimit-Policy`` and ``RateLimit``.
        client_ip: resolver for unauthenticated requests (default: the socket peer).
        key_prefix: prefix of every storage key.
        clock: epoch-seconds callable (in-process windows, breaker); tests pass a FakeClock.
        on_reject: ``(scope, info) -> ASGI app or None`` to answer a 429 yourself; the
            rate-limit headers and ``Retry-After`` are added to its response.
        quotas: the :class:`~extapi_kit.usage.tracker.UsageTracker` of the
            :class:`~extapi_kit.middleware.usage.UsageMiddleware` inside this one (``build()``
            passes it). When both are on the same Redis, a request's quota counters are
            decided and charged in the rate limiter's script, all or nothing with its windows:
            one round trip per request, and a request refused by either costs nothing in the
            other. Otherwise the usage layer charges quotas itself, as without it.
        credits: the :class:`~extapi_kit.credits.CreditLedger` of the
            :class:`~extapi_kit.credits.CreditsMiddleware` inside this one (``build()`` passes
            it). When both are on the same Redis, the key's and its owner's credit balances are
            spent in the rate limiter's script too, all or nothing with the windows and quotas
            (issue 20 §2); otherwise the credits layer spends them itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        storage: str | Any = "memory://",
        read: PolicySpec = "100/minute",
        write: PolicySpec = "20/minute",
        policies: Mapping[str, PolicySpec] | None = None,
        strategy: str = "sliding-window",
        rules: Sequence[RateLimitRule] | Mapping[str, str | int | RateLimitRule] | None = None,
        per_owner: PolicySpec | None = None,
        exempt_paths: Sequence[str] = (),
        exempt_scopes: Sequence[str] = (),
        failure_mode: str = "open",
        deadline: float = 0.1,
        fallback_divisor: int | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        legacy_headers: bool = True,
        ietf_headers: bool = True,
        client_ip: ClientIPResolver | None = None,
        key_prefix: str = "extapi",
        clock: Clock | None = None,
        on_reject: OnReject | None = None,
        quotas: UsageTracker | None = None,
        credits: CreditLedger | None = None,
    ) -> None:
        self.app = app
        if failure_mode not in ("open", "closed"):
            raise ConfigurationError(f"failure_mode must be 'open' or 'closed': {failure_mode!r}")
        if not deadline > 0:
            raise ConfigurationError(f"deadline must be positive: {deadline!r}")
        if not probe_interval > 0:
            raise ConfigurationError(f"probe_interval must be positive: {probe_interval!r}")
        if fallback_divisor is not None and (
            isinstance(fallback_divisor, bool)
            or not isinstance(fallback_divisor, int)
            or fallback_divisor < 1
        ):
            raise ConfigurationError(f"fallback_divisor must be an int >= 1: {fallback_divisor!r}")
        if not key_prefix or "{" in key_prefix:
            raise ConfigurationError(f"invalid key_prefix: {key_prefix!r}")
        self._strategy = strategy_code(strategy)
        # The strategy is part of the key: each strategy stores a different Redis type, so a
        # strategy change must not meet the old keys (WRONGTYPE).
        key_prefix = f"{key_prefix}:{'fsm'[self._strategy - 1]}"
        self._key_prefix = key_prefix
        specs: dict[str, PolicySpec] = {"read": read, "write": write, **(policies or {})}
        self._rules = compile_rules(rules)
        for compiled in self._rules:
            rule = compiled.rule
            if rule.limits is not None and rule.rate_class is not None:
                specs[rule.rate_class] = rule.limits
        self._plans = {
            name: Plan(RatePolicy.parse(name, s), key_prefix) for name, s in specs.items()
        }
        self._owner_plan = None
        if per_owner is not None:
            name = per_owner.name if isinstance(per_owner, RatePolicy) else "owner"
            self._owner_plan = Plan(RatePolicy.parse(name, per_owner), key_prefix)
        self._overrides = OverrideCache()
        self._override_plans: dict[tuple[str, str, str | None], Plan | None] = {}
        self._exempt_paths = tuple(p.rstrip("/") or "/" for p in exempt_paths)
        self._exempt_scopes = tuple(exempt_scopes)
        self._ietf = ietf_headers
        self._legacy = legacy_headers
        self._resolver = client_ip or ClientIPResolver()
        self._on_reject = on_reject
        self._probe_interval = probe_interval
        workers, reason = detect_workers()
        self._backend, in_process = make_backend(
            storage,
            self._strategy,
            clock=clock or time.time,
            deadline=deadline,
            failure_mode=failure_mode,
            fallback_divisor=fallback_divisor if fallback_divisor is not None else workers,
            probe_interval=probe_interval,
        )
        if in_process and workers > 1:
            logger.warning(
                "RateLimitMiddleware uses in-process memory storage but several worker processes "
                "seem to serve this app (%s): every worker enforces its own copy of each limit, "
                "so clients get up to N x the limit. Use storage='redis://...' for shared limits.",
                reason,
            )
        self._rejections = telemetry.counter(
            "extapi.ratelimit.rejections", "requests refused by the rate limiter"
        )
        self._quotas: UsageTracker | None = None
        self._quota_store: Any = None
        self._quota_charges: dict[int, tuple[QuotaPlan, Any]] = {}
        self._hit_with_quota: Any = None
        if quotas is not None:
            self._link_quotas(quotas)
        self._credits: CreditLedger | None = None
        self._credit_store: Any = None
        self._credit_charges: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        if credits is not None:
            self._link_credits(credits)

    def _link_credits(self, ledger: CreditLedger) -> None:
        primary: Any = getattr(self._backend, "primary", None)
        if getattr(primary, "multiplexed", False) is not True:
            return
        from extapi_kit.credits.store_redis import RedisCreditStore

        store = ledger.store
        # Same server and database only: otherwise the balances would be spent elsewhere.
        if isinstance(store, RedisCreditStore) and store.server_address == primary.pipe.address:
            self._credits = ledger
            self._credit_store = store
            self._hit_with_quota = self._backend.hit

    def _credit_charge(self, qplan: QuotaPlan | None, subjects: tuple[str, ...], spend: int) -> Any:
        key = (id(qplan), subjects, spend)
        entry = self._credit_charges.get(key)
        if entry is not None and entry[0] is qplan:
            return entry[1]
        from extapi_kit.ratelimit.redis_pipeline import QuotaCharge

        base = self._quota_charge(qplan) if qplan is not None else QuotaCharge((), ())
        store = self._credit_store
        charge = QuotaCharge(
            base.keys + tuple(store.balance_key(s) for s in subjects),
            base.args + (spend,) * len(subjects),
            credits=len(subjects),
        )
        if len(self._credit_charges) >= 4096:
            self._credit_charges.clear()
        # Holding the plan keeps its id from being reused while the entry lives.
        self._credit_charges[key] = (qplan, charge)
        return charge

    def _link_quotas(self, tracker: UsageTracker) -> None:
        primary: Any = getattr(self._backend, "primary", None)
        if getattr(primary, "multiplexed", False) is not True:
            return
        from extapi_kit.usage.store_redis import RedisUsageStore

        store = tracker.store
        # Same server and database only: otherwise the counters would be charged elsewhere.
        if isinstance(store, RedisUsageStore) and store.server_address == primary.pipe.address:
            self._quotas = tracker
            self._quota_store = store
            # FailoverBackend.hit takes the quota counters for a multiplexed Redis primary.
            self._hit_with_quota = self._backend.hit

    def _quota_charge(self, plan: QuotaPlan) -> Any:
        entry = self._quota_charges.get(id(plan))
        if entry is not None and entry[0] is plan:
            return entry[1]
        from extapi_kit.ratelimit.redis_pipeline import QuotaCharge

        store = self._quota_store
        charge = QuotaCharge(
            tuple(store.quota_key(c.counter) for c in plan.checks),
            tuple(x for c in plan.checks for x in (c.limit, max(1, c.ttl))),
        )
        if len(self._quota_charges) >= 4096:
            self._quota_charges.clear()
        # Holding the plan keeps its id from being reused while the entry lives.
        self._quota_charges[id(plan)] = (plan, charge)
        return charge

    def __repr__(self) -> str:
        return f"RateLimitMiddleware(policies={sorted(self._plans)}, backend={self._backend!r})"

    @property
    def backend(self) -> Any:
        """The decision backend (for tests and diagnostics)."""
        return self._backend

    async def aclose(self) -> None:
        """Close the storage connections (call from the app's shutdown)."""
        await self._backend.aclose()

    def _override_plan(self, name: str, spec: str, label: str | None = None) -> Plan | None:
        key = (name, spec, label)
        try:
            return self._override_plans[key]
        except KeyError:
            pass
        policy = self._overrides.get(name, spec)
        plan = Plan(policy, self._key_prefix) if policy is not None else None
        if policy is None:
            logger.warning("ignoring an unparsable per-key %r limit override", name)
        elif label is not None:
            # A key on a plan (issue 20): the headers name the plan's policy ("pro.read"), while
            # the storage keys keep the class name and never the limit or the plan, so a plan
            # change (or a move to another plan) keeps the counts (K2).
            heads = plan.key_heads if plan is not None else ()
            try:
                plan = Plan(RatePolicy.parse(f"{label}.{name}", policy), self._key_prefix)
                plan.key_heads = heads
            except ConfigurationError:
                pass  # a name too long for a header item: keep the class name
        if len(self._override_plans) >= 1024:
            self._override_plans.clear()
        self._override_plans[key] = plan
        return plan

    def _exempt_path(self, path: str) -> bool:
        for p in self._exempt_paths:
            if p == "/" or path == p or path.startswith(p + "/"):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self._exempt_paths and self._exempt_path(path):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        principal = ctx.principal
        if principal is not None and self._exempt_scopes:
            if any(principal.has_scope(s) for s in self._exempt_scopes):
                await self.app(scope, receive, send)
                return
        method = scope.get("method", "GET") if kind == "http" else "GET"
        rate_class = "read" if method in READ_METHODS else "write"
        cost = 1
        route = ctx.route
        if route is not None:
            hook = route.extra.get("cost_hook")
            if hook is not None:
                # A cost known only from the body (issue 21: a GraphQL operation's computed
                # cost): the hook reads it once, republishes the route's settings (cost, class)
                # on the context and hands back a receive that replays the body.
                route, receive = await hook(scope, receive)
            rate_class = route.rate_class or rate_class
            cost = route.cost if route.cost > 0 else 0
        else:
            for rule in self._rules:
                if rule.matches(path):
                    if rule.rule.exempt:
                        await self.app(scope, receive, send)
                        return
                    rate_class = rule.rule.rate_class or rate_class
                    cost = rule.rule.cost
                    break
        plan = None
        if principal is not None and principal.rate_limits:
            spec = principal.rate_limits.get(rate_class)
            if spec:
                plan = self._override_plan(rate_class, spec, principal.plan)
        if plan is None:
            plan = self._plans.get(rate_class)
            if plan is None:  # a class nobody configured: count it as its method's class
                plan = self._plans["read" if method in READ_METHODS else "write"]
        # The identity is a Redis hash tag ({...}): every key of one principal (its windows,
        # and its quota counters when the quotas ride along) lands in one Redis Cluster slot.
        owner_plan = self._owner_plan
        if principal is not None:
            if owner_plan is not None and principal.owner:
                # The owner's windows are charged in the same script: the key's windows take
                # the owner's tag so the script's keys stay in one cluster slot.
                identity = "{o:" + principal.owner + "}k:" + principal.key_id
            else:
                identity = "{k:" + principal.key_id + "}"
        else:
            ip = self._resolver.resolve(scope)
            identity = "{ip:" + ip + "}" if ip else "{anonymous}"
        plans = [plan]
        keys = [head + identity for head in plan.key_heads]
        windows = list(plan.windows)
        if owner_plan is not None and principal is not None and principal.owner:
            plans.append(owner_plan)
            keys.extend(head + "{o:" + principal.owner + "}" for head in owner_plan.key_heads)
            windows.extend(owner_plan.windows)
        tracker = self._quotas
        qplan = None
        qnow = 0.0
        if (
            tracker is not None
            and principal is not None
            and (principal.quota or principal.owner)
            # The script charges one cost to both; the usage layer charges 1 without a route.
            and cost == (1 if route is None else max(route.cost, 0))
        ):
            qnow = tracker.clock()
            try:
                qplan = tracker.quota_plan(qnow, principal.key_id, principal.quota, principal.owner)
            except ConfigurationError:
                qplan = None  # the usage layer logs it and charges nothing
        ledger = self._credits
        subjects: tuple[str, ...] = ()
        spend = 0
        try:
            if ledger is not None and principal is not None:
                # Credits ride in the same script: the credits layer's cost (1 without a route).
                subjects = ledger.subjects(principal.key_id, principal.owner)
                spend = 1 if route is None else max(route.cost, 0)
                charge = self._credit_charge(qplan, subjects, spend)
                result = await self._hit_with_quota(keys, windows, cost, charge)
            elif qplan is None:
                result = await self._backend.hit(keys, windows, cost)
            else:
                charge = self._quota_charge(qplan)
                result = await self._hit_with_quota(keys, windows, cost, charge)
        except StoreUnavailableError:
            await self._unavailable(scope, send, plan, kind)
            return
        if (
            ledger is not None
            and principal is not None
            and result.credits is not None
            and result.allowed
            and result.quota_allowed
        ):
            from extapi_kit.credits.models import FUSED

            ctx.extra[FUSED] = ledger.settle_figures(
                principal.key_id,
                principal.owner,
                subjects,
                result.credits_allowed,
                result.credits,
                spend,
            )
        if (
            qplan is not None
            and tracker is not None
            and principal is not None
            and result.quota is not None
            and result.allowed
        ):
            ctx.quota = tracker.settle(
                qplan,
                result.quota_allowed,
                result.quota,
                cost,
                qnow,
                principal.key_id,
                principal.owner,
            )
        headers, info, violated, retry_after = render(
            plans, result, ietf=self._ietf, legacy=self._legacy
        )
        ctx.rate_limit = info
        if result.allowed:
            if headers:
                start = "http.response.start" if kind == "http" else "websocket.accept"
                await self.app(scope, receive, _with_headers(send, headers, start))
            else:
                await self.app(scope, receive, send)
            return
        self._rejections.add(1, {"policy": info.policy})
        if kind == "websocket":
            await close_websocket(send, WS_POLICY_VIOLATION, "rate limit exceeded")
            return
        headers.append((b"retry-after", str(retry_after).encode()))
        if self._on_reject is not None:
            custom = self._on_reject(scope, info)
            if custom is not None:
                await custom(scope, receive, _with_headers(send, headers))
                return
        await send_problem(
            send,
            "quota-exceeded",
            f"Rate limit exceeded for {', '.join(violated)}; retry in {retry_after} s.",
            headers=headers,
            scope=scope,
            extensions={"violated-policies": violated},
        )

    async def _unavailable(self, scope: Scope, send: Send, plan: Plan, kind: str) -> None:
        retry = max(1, ceil(self._probe_interval))
        limit, _ = plan.windows[0]
        get_context(scope).rate_limit = RateLimitInfo(
            policy=plan.policy.name,
            limit=limit,
            remaining=0,
            reset_after=float(retry),
            allowed=False,
            degraded=True,
        )
        if kind == "websocket":
            await close_websocket(send, WS_TRY_AGAIN_LATER, "rate limiter unavailable")
            return
        await send_problem(
            send,
            "service-unavailable",
            "The rate limiter cannot reach its storage; try again shortly.",
            headers=[(b"retry-after", str(retry).encode())],
            scope=scope,
        )


def _with_headers(
    send: Send, headers: list[tuple[bytes, bytes]], start: str = "http.response.start"
) -> Send:
    # The headers ride on the message that starts the response (websocket.accept carries
    # headers since ASGI spec 2.1).
    async def send_with_headers(message: Message) -> None:
        if message["type"] == start:
            message = dict(message)
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
