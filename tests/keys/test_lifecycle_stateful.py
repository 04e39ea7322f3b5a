"""G3: a hypothesis state machine over the key lifecycle (create, rotate, revoke, time, verify)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule

from extapi_kit.exceptions import InvalidKeyError
from extapi_kit.keys import KeyService
from extapi_kit.testing import FakeClock
from tests.keys.support import cheap_hasher


@dataclass
class _Model:
    key: str
    key_id: str
    expires_at: float | None
    revoked: bool = False
    valid_until: float | None = None  # set by rotation (grace end)

    def valid(self, now: float) -> bool:
        if self.revoked:
            return False
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return self.valid_until is None or now < self.valid_until


class KeyLifecycle(RuleBasedStateMachine):
    """Invariant: a key verifies if and only if the model says it is live; revoked never does."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(1_800_000_000.0)
        self.service = KeyService(
            "memory://",
            hasher=cheap_hasher(),
            cache_ttl=0.5,
            failures_per_ip=10**9,
            failures_per_key=10**9,
            clock=self.clock,
        )
        self.models: list[_Model] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @rule(target=keys, expires_in=st.one_of(st.none(), st.integers(min_value=5, max_value=500)))
    def create(self, expires_in: int | None) -> _Model:
        record, key = self.run(self.service.create("k", scopes=["a"], expires_in=expires_in))
        expires = None if expires_in is None else self.clock() + expires_in
        model = _Model(key=key, key_id=record.id, expires_at=expires)
        self.models.append(model)
        return model

    @rule(target=keys, old=keys, grace=st.integers(min_value=0, max_value=200))
    def rotate(self, old: _Model, grace: int) -> _Model:
        try:
            record, key = self.run(self.service.rotate(old.key_id, grace=grace))
        except Exception:
            # Rotating a revoked, expired or already rotated key may be refused.
            return old
        now = self.clock()
        end = now + grace
        if old.expires_at is not None:
            end = min(end, old.expires_at)
        old.valid_until = end if old.valid_until is None else min(old.valid_until, end)
        model = _Model(key=key, key_id=record.id, expires_at=old.expires_at)
        self.models.append(model)
        return model

    @rule(model=keys)
    def revoke(self, model: _Model) -> None:
        self.run(self.service.revoke(model.key_id))
        model.revoked = True

    @rule(seconds=st.integers(min_value=1, max_value=300))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(model=keys)
    def verify(self, model: _Model) -> None:
        now = self.clock()
        try:
            principal = self.run(self.service.verify(model.key))
        except InvalidKeyError:
            assert not model.valid(now), "a live key was refused"
            return
        assert model.valid(now), "a revoked, expired or retired key verified"
        assert principal.key_id == model.key_id

    def teardown(self) -> None:
        self.run(self.service.aclose())
        self.loop.close()


KeyLifecycle.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestKeyLifecycle = KeyLifecycle.TestCase
