"""Key creation refuses bad names, scopes, grants, limits and metadata before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from tests.keys.support import cheap_hasher

pytestmark = pytest.mark.anyio


@pytest.fixture
def service() -> KeyService:
    return KeyService(MemoryKeyStore(), hasher=cheap_hasher())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bell\x07key"}, "printable"),
        ({"name": "ok", "owner": "tenant\nB"}, "printable"),
        ({"name": "ok", "grants": {"projects": []}}, "grants.projects"),
        ({"name": "ok", "grants": {"projects": ["x" * 129]}}, "grants.projects"),
        ({"name": "ok", "grants": {"projects": ["a\x00b"]}}, "grants.projects"),
        ({"name": "ok", "rate_limits": {"bad class!": "5/minute"}}, "rate_limits class"),
        ({"name": "ok", "rate_limits": {"read": 5}}, "rate_limits.read"),
        ({"name": "ok", "rate_limits": {"read": "lots"}}, "rate_limits.read: invalid rate"),
        ({"name": "ok", "metadata": ["not", "a", "mapping"]}, "must be a mapping"),
        ({"name": "ok", "metadata": {"blob": "x" * 17_000}}, "larger than"),
        ({"name": "ok", "quota": {"when": object()}}, "quota.when"),
        ({"name": "ok", "metadata": {"when": object()}}, "JSON-serialisable"),
    ],
)
async def test_invalid_key_settings_are_refused(
    service: KeyService, kwargs: dict[str, Any], message: str
) -> None:
    """A13: a key with unusable settings is refused at creation with a clear reason."""
    with pytest.raises(ConfigurationError, match=message):
        await service.create(**kwargs)
    assert (await service.list())[0] == []


async def test_scopes_are_deduplicated_and_single_grant_id_accepted(service: KeyService) -> None:
    """Repeated scopes collapse (in order); a single id string is one grant, not its letters."""
    record, _ = await service.create(
        "k", scopes="projects:read, projects:read,projects:write", grants={"projects": "abc"}
    )
    assert record.scopes == ("projects:read", "projects:write")
    assert record.grants == {"projects": ("abc",)}
