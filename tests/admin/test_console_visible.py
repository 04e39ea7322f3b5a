"""The admin console as a person sees it in Chromium: what is visible, where, and what it says.

Every check reads the rendered page (bounding boxes, computed style, ``innerText``), never a DOM
property such as ``hidden``: a stylesheet can override an attribute (issue 18 §4). Screenshots
land in the test's ``tmp_path`` (``console-*.png``) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from extapi_kit.webhooks import WebhookManager
from extapi_kit.webhooks.store_memory import MemoryWebhookStore
from tests.admin.conftest import Admin, admin_setup
from tests.support.cdp import Browser
from tests.webhooks.receivers import ok, serve

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)"),
]

# What a person sees of one element: its box, whether it is drawn, its text and colours.
_SEEN = """((sel) => { const e = document.querySelector(sel); if (!e) return null;
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return {x: r.x, y: r.y, width: r.width, height: r.height, text: e.innerText || "",
          shown: r.width > 0 && r.height > 0 && s.visibility === "visible" && s.display !== "none",
          color: s.color, background: s.backgroundColor}; })"""
# Visible boxes with a background or a border but nothing in them (an "empty grey bar").
_EMPTY_BOXES = """Array.from(document.querySelectorAll("main *")).filter((e) => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  if (r.width === 0 || r.height === 0 || s.visibility !== "visible") return false;
  if (["INPUT", "SELECT", "BUTTON", "svg", "TEXTAREA"].includes(e.tagName)) return false;
  if (e.closest("svg, table, form, fieldset")) return false;
  const painted = s.backgroundColor !== "rgba(0, 0, 0, 0)" || parseFloat(s.borderTopWidth) > 0;
  return painted && !(e.innerText || "").trim() && !e.querySelector("input, select, svg, button");
}).map((e) => e.tagName + "#" + e.id + "." + e.className)"""


@dataclass
class Console:
    """A running admin app (keys, audit, webhooks) and a webhook receiver on loopback."""

    admin: Admin
    manager: WebhookManager
    base: str
    hook: str


@asynccontextmanager
async def _console() -> AsyncIterator[Console]:
    manager = WebhookManager(MemoryWebhookStore(), allow_loopback=True)
    async with (
        admin_setup(webhooks=manager) as admin,
        serve(admin.app) as base,
        serve(ok) as receiver,
    ):
        yield Console(admin, manager, base, receiver + "/hook")


async def _in_browser(tmp_path: Path, fn: Callable[[Browser], Any]) -> Any:
    assert CHROMIUM is not None
    chromium = CHROMIUM

    def drive() -> Any:
        browser = Browser(chromium, tmp_path / "profile", height=1400)
        try:
            return fn(browser)
        finally:
            browser.close()

    return await anyio.to_thread.run_sync(drive)


def _seen(b: Browser, selector: str) -> dict[str, Any]:
    found: dict[str, Any] | None = b.eval(f"{_SEEN}({json.dumps(selector)})")
    assert found is not None, f"{selector} is not in the page"
    return found


def _open(b: Browser, c: Console) -> None:
    b.page("Page.navigate", url=c.base + "/admin/console")
    b.wait_for("document.readyState === 'complete' && !!document.querySelector('#login-key')")


def _sign_in(b: Browser, key: str) -> None:
    b.type("#login-key", key)
    b.click("#login-form button[type=submit]")


def _signed_in(b: Browser, c: Console) -> None:
    _open(b, c)
    _sign_in(b, c.admin.admin_key)
    b.wait_for("document.querySelectorAll('#key-rows tr').length > 0")


def _status(b: Browser) -> str:
    text: str = _seen(b, "#status")["text"]
    return text


async def test_secret_box_is_invisible_until_a_secret_is_shown(tmp_path: Path) -> None:
    """G8: after sign-in no "Copy this secret now" box is drawn; creating a key draws it with the
    key, and "I have stored it" removes it from view."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        b.screenshot(tmp_path / "console-signed-in.png")
        before = _seen(b, "#secret-box")
        b.type("#key-form input[name=name]", "ci")
        b.click("#key-submit")
        b.wait_for("document.querySelector('#secret-value').textContent.startsWith('xk_')")
        shown = _seen(b, "#secret-box")
        b.screenshot(tmp_path / "console-secret.png")
        b.click("#secret-dismiss")
        after = _seen(b, "#secret-box")
        return {"before": before, "shown": shown, "after": after, "body": _seen(b, "body")}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
    assert not seen["before"]["shown"], seen["before"]
    assert seen["shown"]["shown"] and "Copy this secret now" in seen["shown"]["text"]
    assert not seen["after"]["shown"], seen["after"]
    assert "Copy this secret now" not in seen["body"]["text"]


async def test_a_refused_key_message_goes_away_after_a_good_key(tmp_path: Path) -> None:
    """G8: a wrong admin key shows the red "refused (401)" line; signing in with a good key
    afterwards leaves no trace of it next to "Signed in"."""

    def drive(b: Browser) -> dict[str, Any]:
        _open(b, c)
        _sign_in(b, "xk_live_wrong")
        b.wait_for("document.querySelector('#status').innerText.includes('refused')")
        refused = _seen(b, "#status")
        _sign_in(b, c.admin.admin_key)
        b.wait_for("document.querySelectorAll('#key-rows tr').length > 0")
        b.screenshot(tmp_path / "console-after-good-key.png")
        return {"refused": refused, "body": _seen(b, "body"), "state": _seen(b, "#session")}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
    assert seen["refused"]["shown"] and seen["refused"]["color"] == "rgb(179, 38, 30)"
    assert "Signed in" in seen["state"]["text"]
    assert "refused" not in seen["body"]["text"], seen["body"]["text"][:500]


async def test_login_placeholder_shows_this_services_key_format(tmp_path: Path) -> None:
    """G8: the admin-key field's placeholder shows the key format the service issues
    (``xk_live_...``), not another product's ``sk_live_...``."""

    def drive(b: Browser) -> str:
        _open(b, c)
        b.box("#login-key")
        b.screenshot(tmp_path / "console-login.png")
        placeholder: str = b.eval("document.querySelector('#login-key').placeholder")
        return placeholder

    async with _console() as c:
        placeholder = await _in_browser(tmp_path, drive)
    assert placeholder == f"{c.admin.keys.prefix}_{c.admin.keys.default_env}_..."
    assert c.admin.admin_key.startswith(placeholder.removesuffix("..."))


async def test_console_scopes_follow_the_one_rule_and_show_its_hint(tmp_path: Path) -> None:
    """G9: scopes typed with commas and spaces both work in the console; an upper-case scope
    is refused with a visible message naming the rule and the lower-case spelling."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        b.type("#key-form input[name=name]", "mixed")
        b.type("#key-form input[name=scopes]", "projects:read, projects:write jobs:read")
        b.click("#key-submit")
        b.wait_for("document.querySelector('#secret-value').textContent.startsWith('xk_')")
        b.click("#secret-dismiss")
        row = b.wait_for(
            "Array.from(document.querySelectorAll('#key-rows tr'))"
            ".map((r) => r.innerText).find((t) => t.includes('mixed'))"
        )
        b.type("#key-form input[name=name]", "loud")
        b.type("#key-form input[name=scopes]", "PROJECTS:READ")
        b.click("#key-submit")
        b.wait_for("document.querySelector('#status').className === 'error'")
        b.screenshot(tmp_path / "console-scope-error.png")
        return {"row": row, "error": _seen(b, "#status")}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
        names = {r.name: r.scopes for r in (await c.admin.keys.list())[0]}
    assert names["mixed"] == ("projects:read", "projects:write", "jobs:read")
    assert "projects:read projects:write jobs:read" in seen["row"]
    assert "loud" not in names
    error = seen["error"]
    assert error["shown"] and error["color"] == "rgb(179, 38, 30)"
    assert "lowercase" in error["text"] and "'projects:read'" in error["text"], error["text"]
    assert "commas or spaces" in error["text"], error["text"]


async def test_endpoint_secret_appears_next_to_the_webhook_form(tmp_path: Path) -> None:
    """G8: a new endpoint's signing secret is drawn inside the webhooks card, right under its
    form, and nothing appears in the API-keys card."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        b.type("#endpoint-form input[name=url]", c.hook)
        b.click("#endpoint-form button[type=submit]")
        b.wait_for("document.querySelectorAll('#endpoint-rows tr').length > 0")
        where = b.wait_for(
            """(() => { const vis = (e) => { const r = e.getBoundingClientRect();
              return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility === 'visible'; };
            const code = Array.from(document.querySelectorAll('code'))
              .find((e) => e.textContent.startsWith('whsec_') && vis(e));
            if (!code) return null;
            const box = (e) => { const r = e.getBoundingClientRect();
              return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
            return {secret: box(code), card: box(document.querySelector('#webhooks')),
                    form: box(document.querySelector('#endpoint-form')),
                    table: box(document.querySelector('#endpoint-rows').closest('table'))}; })()"""
        )
        b.screenshot(tmp_path / "console-endpoint-secret.png")
        return {"where": where, "keys_box": _seen(b, "#secret-box")}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
    where = seen["where"]
    secret, card = where["secret"], where["card"]
    assert card["top"] <= secret["top"] and secret["bottom"] <= card["bottom"], where
    assert where["form"]["bottom"] <= secret["top"] <= where["table"]["top"], where
    assert not seen["keys_box"]["shown"]


async def test_a_test_ping_is_listed_as_a_test_delivery(tmp_path: Path) -> None:
    """W16: after "Test" answers OK, "Load deliveries" lists the ping as one delivery marked
    as a test, and its attempt can be shown."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        b.type("#endpoint-form input[name=url]", c.hook)
        b.click("#endpoint-form button[type=submit]")
        b.wait_for("document.querySelectorAll('#endpoint-rows tr').length > 0")
        b.click("#endpoint-rows tr td.actions button")  # the row's first button: Test
        b.wait_for("document.querySelector('#status').innerText.includes('Test ping')")
        ping = _status(b)
        b.click("#delivery-form button[type=submit]")
        b.wait_for("document.querySelector('#status').innerText.includes('deliver')")
        rows = b.eval(
            "Array.from(document.querySelectorAll('#delivery-rows tr'))"
            ".filter((r) => r.getBoundingClientRect().height > 0).map((r) => r.innerText)"
        )
        listed = _status(b)
        b.screenshot(tmp_path / "console-deliveries.png")
        b.click("#delivery-rows tr td.actions button")  # Attempts
        b.wait_for("document.querySelector('#attempts').innerText.trim().length > 0")
        return {"ping": ping, "rows": rows, "listed": listed, "attempts": _seen(b, "#attempts")}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
    assert "OK" in seen["ping"], seen
    assert len(seen["rows"]) == 1, seen
    assert "test" in seen["rows"][0].lower() and "succeeded" in seen["rows"][0], seen["rows"]
    assert "1 delivery" in seen["listed"], seen["listed"]
    assert seen["attempts"]["shown"] and "204" in seen["attempts"]["text"]


async def test_key_and_endpoint_forms_offer_every_setting_and_keys_show_expiry(
    tmp_path: Path,
) -> None:
    """G8: the key form has visible fields for description, rate limits and networks, the key
    table an Expires column, and the endpoint form a grants field; what is typed is stored."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        headers = b.eval(
            "Array.from(document.querySelectorAll('#keys thead th')).map((e) => e.innerText)"
        )
        b.type("#key-form input[name=name]", "full")
        b.type("#key-form input[name=description]", "CI bot")
        b.type("#key-form input[name=rate_limits]", "read=100/minute, write=10/minute")
        b.type("#key-form input[name=allowed_cidrs]", "10.0.0.0/8 127.0.0.1")
        b.type("#key-form input[name=expires_in]", "30d")
        b.click("#key-submit")
        b.wait_for("document.querySelector('#secret-value').textContent.startsWith('xk_')")
        b.click("#secret-dismiss")
        row = b.wait_for(
            "Array.from(document.querySelectorAll('#key-rows tr'))"
            ".map((r) => Array.from(r.cells).map((c) => c.innerText))"
            ".find((cells) => cells.includes('full'))"
        )
        b.type("#endpoint-form input[name=url]", c.hook)
        b.type("#endpoint-form input[name=description]", "billing")
        b.type("#endpoint-form input[name=grants]", "projects=7,9 jobs=*")
        b.click("#endpoint-form button[type=submit]")
        b.wait_for("document.querySelectorAll('#endpoint-rows tr').length > 0")
        b.screenshot(tmp_path / "console-settings.png")
        return {"headers": headers, "row": row}

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
        full = next(r for r in (await c.admin.keys.list())[0] if r.name == "full")
        (endpoint,) = await c.manager.list_endpoints()
    assert "Expires" in seen["headers"], seen["headers"]
    expires = seen["row"][seen["headers"].index("Expires")]
    assert full.expires_at is not None and expires.startswith("20"), seen["row"]
    assert full.description == "CI bot"
    assert dict(full.rate_limits) == {"read": "100/minute", "write": "10/minute"}
    assert full.allowed_cidrs == ("10.0.0.0/8", "127.0.0.1/32")
    assert endpoint.description == "billing"
    assert endpoint.grants == {"projects": ["7", "9"], "jobs": ["*"]}


async def test_console_loads_without_failed_requests_or_empty_boxes(tmp_path: Path) -> None:
    """G8: the page and its icon load without a failed request (no /favicon.ico 404), and no
    empty painted box (the grey bar under Deliveries) is drawn after sign-in."""

    def drive(b: Browser) -> dict[str, Any]:
        _signed_in(b, c)
        b.wait_for("document.querySelectorAll('#audit-rows tr').length > 0")
        b.screenshot(tmp_path / "console-clean.png")
        icon = b.eval(
            "(() => { const l = document.querySelector('link[rel~=icon]');"
            " return l ? l.href : null; })()"
        )
        return {"empty": b.eval(_EMPTY_BOXES), "attempts": _seen(b, "#attempts"),
                "icon": icon, "log": list(b.log)}  # fmt: skip

    async with _console() as c:
        seen = await _in_browser(tmp_path, drive)
        async with httpx.AsyncClient() as client:
            icon = None if seen["icon"] is None else await client.get(seen["icon"])
    failed = [e for e in seen["log"] if e.get("source") == "network" or e.get("level") == "error"]
    assert failed == [], failed
    assert icon is not None and icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/")
    assert seen["empty"] == [], seen["empty"]
    assert not seen["attempts"]["shown"], seen["attempts"]
