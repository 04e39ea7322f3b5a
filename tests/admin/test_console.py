"""The admin console: package data under a strict CSP; the scripted flow under node and Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import pytest

from extapi_kit.admin import CONSOLE_CSP
from extapi_kit.usage import UsageTracker
from tests.admin.conftest import Admin, admin_setup

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
STATIC = resources.files("extapi_kit.admin") / "static"
# "counters": the admin API has a usage tracker (a SQLite file) and its own stack counts with it,
# so the console draws daily counters and a quota meter; "audit": no tracker, the per-minute
# activity view derived from the audit trail.
MODES = ["counters", "audit"]


@asynccontextmanager
async def _setup(mode: str, tmp_path: Path) -> AsyncIterator[Admin]:
    if mode == "audit":
        async with admin_setup() as admin:
            yield admin
        return
    tracker = UsageTracker(f"sqlite:///{tmp_path}/usage.db")
    try:
        async with admin_setup(usage=tracker, build_options={"usage": tracker}) as admin:
            yield admin
    finally:
        await tracker.aclose()


async def _check_flow(admin: Admin, mode: str, steps: dict[str, Any]) -> None:
    """Assert the scripted flow's steps: grants editor, edit form, chart source, revocation."""
    # Drawn or not (a box and a computed style in Chromium), not the hidden property (G8).
    assert steps["secret_hidden_at_start"] is True
    assert steps["secret_shown"] is True
    assert steps["grants_created"] == {"projects": ["7", "9"]}
    assert steps["edit_prefilled"] is True and steps["grant_row_refused"] is True
    assert steps["grants_updated"] == {"projects": ["*"], "jobs": ["3"]}
    assert steps["quota_updated"] == {"monthly": 1000} and steps["form_reset"] is True
    assert steps["call_status"] == 200 and steps["after_revoke_status"] == 401
    assert steps["audit_rows"] >= 1 and steps["usage_requests"] >= 1
    assert steps["chart_bars"] >= 1
    if mode == "counters":
        assert steps["usage_source"] == "counters" and steps["usage_days"] == 30
        assert steps["quota_meters"] == 1
    else:
        assert steps["usage_source"] == "audit" and steps["quota_meters"] == 0
    record = await admin.keys.get(steps["created"])
    assert record.revoked_at is not None
    assert dict(record.grants) == {"projects": ("*",), "jobs": ("3",)}
    assert dict(record.quota) == {"monthly": 1000}


@pytest.mark.anyio
async def test_console_page_is_served_with_a_strict_csp(admin: Admin) -> None:
    """GET /admin/console answers the HTML page with a self-only CSP, nosniff and no framing."""
    r = await admin.client.get("/admin/console")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert csp == CONSOLE_CSP
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert '<meta name="extapi-admin-api" content="/admin/v1">' in r.text
    assert '<script src="/admin/console/console.js">' in r.text
    assert 'placeholder="xk_live_..."' in r.text
    assert '<link rel="icon" type="image/svg+xml" href="/admin/console/favicon.svg">' in r.text
    assert "{{" not in r.text
    head = await admin.client.head("/admin/console")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == r.headers["content-length"]


@pytest.mark.anyio
async def test_console_assets_and_refusals(admin: Admin) -> None:
    """The JS and CSS are served with their types; other console paths 404; POST is 405."""
    js = await admin.client.get("/admin/console/console.js")
    css = await admin.client.get("/admin/console/console.css")
    assert js.headers["content-type"].startswith("text/javascript") and "sessionStorage" in js.text
    assert css.headers["content-type"].startswith("text/css")
    icon = await admin.client.get("/admin/console/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert "content-security-policy" in js.headers
    assert (await admin.client.get("/admin/console/../v1/keys")).status_code in (401, 404)
    assert (await admin.client.get("/admin/console/other.js")).status_code == 404
    post = await admin.client.post("/admin/console")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert (await admin.client.get("/admin/console/")).status_code == 200


@pytest.mark.anyio
async def test_console_can_be_left_out() -> None:
    """admin_app(console=False) serves no page: the path falls to the authenticated API (401)."""
    async with admin_setup(console=False) as admin:
        assert (await admin.client.get("/admin/console")).status_code == 401


def test_page_and_script_obey_their_own_csp() -> None:
    """No inline script, inline style or handler attributes, and no innerHTML/eval in the JS."""
    page = (STATIC / "console.html").read_text("utf-8")
    script = (STATIC / "console.js").read_text("utf-8")
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert re.search(r"\sstyle=", page) is None
    assert re.search(r"\son[a-z]+=", page) is None
    assert re.search(r"(src|href)=\"?(https?:)?//", page) is None  # nothing from a CDN
    assert re.search(r"https?://(?!www\.w3\.org/2000/svg)", script) is None
    for banned in ("innerHTML", "outerHTML", "eval(", "new Function", "document.write"):
        assert banned not in script
    assert 'setAttribute("style"' not in script


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_console_script_parses() -> None:
    """console.js is syntactically valid JavaScript (node --check)."""
    path = Path(str(STATIC / "console.js"))
    done = subprocess.run(["node", "--check", str(path)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)")
async def test_console_flow_in_headless_chromium(tmp_path: Path, mode: str) -> None:
    """In Chromium the console creates a key with grants, edits its grants and quota, calls the
    API with it, finds the call in the audit view, draws its usage chart (daily counters with a
    quota meter, or the audit fallback) and revokes it (then the key gets 401)."""
    from tests.webhooks.receivers import serve

    assert CHROMIUM is not None
    async with _setup(mode, tmp_path) as admin, serve(admin.app) as base:
        url = f"{base}/admin/console?autotest=1#key={admin.admin_key}&scopes=admin"
        cmd = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ]
        with anyio.fail_after(50):
            done = await anyio.run_process(cmd, check=False)
        dom = done.stdout.decode("utf-8", "replace")
        m = re.search(r'<pre id="autotest-result"[^>]*data-done="1"[^>]*>(.*?)</pre>', dom, re.S)
        assert m is not None, dom[-2000:] + done.stderr.decode("utf-8", "replace")[-2000:]
        result = json.loads(html.unescape(m.group(1)))
        assert result["ok"] is True, result
        await _check_flow(admin, mode, result["steps"])


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_console_autotest_flow_runs_against_a_live_admin_api(
    tmp_path: Path, mode: str
) -> None:
    """Under node with a minimal DOM stand-in, console.js's scripted flow creates a key with
    grants, edits them and sets a quota, calls the API with it, finds the call in the audit view,
    charts it (counters or the audit fallback) and revokes it (then 401)."""
    from tests.webhooks.receivers import serve

    shim = Path(__file__).with_name("console_shim.js")
    script = Path(str(STATIC / "console.js"))
    async with _setup(mode, tmp_path) as admin, serve(admin.app) as base:
        fragment = f"key={admin.admin_key}&scopes=admin"
        cmd = ["node", str(shim), str(script), base, "/admin/console", "/admin/v1", fragment]
        with anyio.fail_after(40):
            done = await anyio.run_process(cmd, check=False)
        assert done.returncode == 0, done.stderr.decode()
        result = json.loads(done.stdout)
        assert result["ok"] is True, result
        await _check_flow(admin, mode, result["steps"])
