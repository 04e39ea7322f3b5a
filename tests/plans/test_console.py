"""The console's Plans view as a person sees it in Chromium (rendered text and boxes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extapi_kit.admin import admin_app
from extapi_kit.keys.service import KeyService
from extapi_kit.plans import PlanService
from tests.admin.test_console_visible import CHROMIUM, _in_browser, _seen
from tests.keys.support import cheap_hasher
from tests.support.cdp import Browser
from tests.webhooks.receivers import serve

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)"),
]

_ROWS = "Array.from(document.querySelectorAll('#plan-rows tr')).map((r) => r.innerText)"


async def test_console_shows_plans_and_a_key_put_on_one(tmp_path: Path) -> None:
    """After sign-in the Plans section is drawn with one row per plan (limits, quota, ceiling,
    policy names, owners); a key created with a plan typed in the key form is stored on it."""
    plans = PlanService("memory://")
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0, plans=plans)
    _, admin_key = await keys.create("root", scopes=["admin", "*"])
    await plans.create("free", rate_limits={"read": "60/minute"}, quota={"daily": 1000},
                       scopes=["projects:read"])  # fmt: skip
    await plans.create("pro", rate_limits={"read": "1000/minute"})
    await plans.assign_owner("acme", "pro")

    def drive(b: Browser) -> dict[str, Any]:
        b.page("Page.navigate", url=base + "/admin/console")
        b.wait_for("document.readyState === 'complete' && !!document.querySelector('#login-key')")
        b.type("#login-key", admin_key)
        b.click("#login-form button[type=submit]")
        b.wait_for(f"{_ROWS}.length === 2")
        b.screenshot(tmp_path / "console-plans.png")
        seen = {"section": _seen(b, "#plans"), "rows": b.eval(_ROWS)}
        b.type("#key-form input[name=name]", "partner")
        b.type("#key-form input[name=plan]", "free")
        b.type("#key-form input[name=scopes]", "projects:read")
        b.click("#key-submit")
        b.wait_for("document.querySelector('#secret-value').textContent.startsWith('xk_')")
        b.click("#secret-dismiss")
        seen["status"] = _seen(b, "#status")["text"]
        return seen

    async with serve(admin_app(keys=keys)) as base:
        seen = await _in_browser(tmp_path, drive)
        listed = (await keys.list())[0]
    assert seen["section"]["shown"], seen["section"]
    assert "Plans" in seen["section"]["text"]
    free, pro = (" ".join(r.split()) for r in seen["rows"])
    assert free == "free read=60/minute daily=1000 projects:read free.read -", free
    assert pro == "pro read=1000/minute - (no ceiling) pro.read acme", pro
    assert "Created key" in seen["status"]
    assert {r.name: r.plan for r in listed} == {"root": None, "partner": "free"}
    await keys.aclose()
