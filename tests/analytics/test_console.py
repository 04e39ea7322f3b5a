"""The console's analytics panel as a person sees it in Chromium (issue 20 §4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from extapi_kit.admin import admin_app
from extapi_kit.audit.sink_memory import MemorySink
from tests.admin.test_console_visible import CHROMIUM, _in_browser, _seen
from tests.analytics.support import stack
from tests.support.cdp import Browser
from tests.webhooks.receivers import serve

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)"),
]

HOSTILE_AGENT = '<img src=x onerror="document.title=1">bot/1'


async def test_analytics_panel_shows_addresses_agents_and_refusals(tmp_path: Path) -> None:
    """K22: after a key's Analytics button its IPs, agents, error rate and refusals show; a
    hostile user agent is drawn as text, never as markup."""
    async with stack("memory://") as st:
        rec, key = await st.keys.create("partner", scopes=["s"])
        _, root = await st.keys.create("root", scopes=["admin", "*"])
        h = {"X-API-Key": key}
        async with st.client("198.51.100.23", HOSTILE_AGENT) as c:
            for _ in range(3):
                assert (await c.get("/api/v1/things", headers=h)).status_code == 200
            assert (await c.post("/api/v1/special", headers=h)).status_code == 403
        await st.settle()
        admin = admin_app(keys=st.keys, audit=MemorySink(), activity=st.activity)

        def drive(b: Browser) -> dict[str, Any]:
            b.page("Page.navigate", url=base + "/admin/console")
            b.wait_for(
                "document.readyState === 'complete' && !!document.querySelector('#login-key')"
            )
            before = _seen(b, "#analytics")
            b.type("#login-key", root)
            b.click("#login-form button[type=submit]")
            b.wait_for("document.querySelectorAll('#key-rows tr').length > 1")
            b.eval(
                "Array.from(document.querySelectorAll('#key-rows tr'))"
                f".find((r) => r.innerText.includes({json.dumps(rec.id)}))"
                ".querySelectorAll('button').forEach((x) => {"
                " if (x.textContent === 'Analytics') x.id = 'pick-analytics'; })"
            )
            b.click("#pick-analytics")
            b.wait_for("document.querySelectorAll('#analytics-ips tr').length > 0")
            b.eval("document.querySelector('#analytics').scrollIntoView()")
            b.screenshot(tmp_path / "console-analytics.png")
            return {
                "before": before,
                "panel": _seen(b, "#analytics"),
                "ip": _seen(b, "#analytics-ips tr td"),
                "agent": _seen(b, "#analytics-agents tr td"),
                "title": b.eval("document.title"),
                "images": b.eval("document.querySelectorAll('#analytics img').length"),
            }

        async with serve(admin) as base:
            seen = await _in_browser(tmp_path, drive)
    assert not seen["before"]["shown"]  # nothing is drawn before signing in
    panel = seen["panel"]
    assert panel["shown"], panel
    assert rec.id in panel["text"]
    assert "4 requests: 3 2xx, 0 3xx, 1 4xx, 0 5xx; error rate 25.0%" in panel["text"]
    assert "Refused: insufficient-scope 1." in panel["text"]
    assert seen["ip"]["shown"] and seen["ip"]["text"] == "198.51.100.23"
    assert seen["agent"]["shown"] and seen["agent"]["text"] == HOSTILE_AGENT
    assert seen["images"] == 0 and seen["title"] != "1"  # the agent is text, never markup
