"""The studio's interactive API reference (Swagger UI, no CDN) in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.examples.studio.external import ALL_SCOPES
from extapi_kit.keys.service import KeyService
from extapi_kit.routing.docs import DOCS_CSP
from tests.support.cdp import Browser
from tests.webhooks.receivers import serve

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
OP = "#operations-projects-get_api_v1_projects"
_LISTED = """Array.from(document.querySelectorAll('.opblock-summary')).map(e => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return {text: e.querySelector('.opblock-summary-method').textContent + ' '
            + e.querySelector('.opblock-summary-path').textContent,
          shown: r.width > 0 && r.height > 0 && s.visibility === 'visible'};
})"""


async def _studio_key(data: Path) -> str:
    svc = KeyService(store_urls(data)["keys"])
    try:
        return (await svc.create("docs-reader", scopes=list(ALL_SCOPES)))[1]
    finally:
        await svc.aclose()


@pytest.mark.anyio
async def test_reference_page_and_assets_are_served_under_a_strict_csp(tmp_path: Path) -> None:
    """G6: the page, Swagger UI's script and stylesheet come from the API itself (nothing from a
    CDN), each under the self-only CSP without unsafe-inline or unsafe-eval."""
    app = create_app(tmp_path / "d")
    async with run_lifespan(app), serve(app) as base, httpx.AsyncClient(base_url=base) as c:
        page = await c.get("/api/v1/docs")
        assert page.status_code == 200 and page.headers["content-security-policy"] == DOCS_CSP
        assert "unsafe-inline" not in DOCS_CSP and "unsafe-eval" not in DOCS_CSP
        assert "//" not in page.text.replace("<!doctype", "")  # no absolute or CDN URL
        assert "<script>" not in page.text and " style=" not in page.text
        for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
            asset = await c.get(f"/api/v1/docs/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert "SwaggerUIBundle" in (await c.get("/api/v1/docs/docs.js")).text
        events = (await c.get("/api/v1/webhooks/event-types")).json()["data"]
        assert {e["type"]: e["version"] for e in events}["job.completed"] == "1"


@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)")
async def test_reference_renders_every_route_and_try_it_works_with_a_typed_key(
    tmp_path: Path,
) -> None:
    """G6: in Chromium the reference shows every documented operation and webhook, breaks no
    CSP rule, and "try it" with a key typed into Authorize answers 200; the key is not stored."""
    assert CHROMIUM is not None
    data = tmp_path / "d"
    app = create_app(data)
    key = await _studio_key(data)
    async with run_lifespan(app), serve(app) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            doc = (await c.get("/api/v1/openapi.json")).json()

        def drive() -> dict[str, Any]:
            browser = Browser(CHROMIUM, tmp_path / "profile")
            try:
                return _drive(browser, base + "/api/v1/docs", key, tmp_path)
            finally:
                browser.close()

        seen = await anyio.to_thread.run_sync(drive)
    documented = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}
    documented |= {f"POST {name}" for name in doc["webhooks"]}
    listed = {row["text"] for row in seen["listed"]}
    assert listed == documented
    assert all(row["shown"] for row in seen["listed"])
    assert seen["status"] == "200"
    assert json.loads(seen["body"])["data"], seen["body"]
    assert seen["stored"] == "", "the key must stay in the page, not in web storage"
    problems = [e for e in seen["log"] if e.get("source") in ("security", "exception")]
    assert problems == [], problems


def _drive(browser: Browser, url: str, key: str, tmp_path: Path) -> dict[str, Any]:
    browser.page("Page.navigate", url=url)
    browser.wait_for("document.querySelectorAll('.opblock-summary').length > 20")
    listed = browser.eval(_LISTED)
    browser.screenshot(tmp_path / "reference.png")
    # Authorize: type the key into the X-API-Key scheme's field, as a person would.
    browser.click(".scheme-container .btn.authorize")
    browser.wait_for("!!document.querySelector('.modal-ux .auth-container input')")
    browser.type(".modal-ux .auth-container input", key)
    browser.click(".modal-ux .auth-container .modal-btn.auth.authorize")
    browser.click(".modal-ux .btn-done")
    # Try it: GET /api/v1/projects.
    browser.click(f"{OP} .opblock-summary-control")
    browser.click(f"{OP} .try-out__btn")
    browser.click(f"{OP} .execute")
    cell = f"{OP} .live-responses-table tr.response .response-col_status"
    status = browser.wait_for(f"document.querySelector('{cell}')?.textContent")
    browser.box(f"{OP} .live-responses-table")
    body = browser.eval(
        f"document.querySelector('{OP} .live-responses-table .microlight')?.textContent"
    )
    browser.screenshot(tmp_path / "try-it.png")
    stored = browser.eval(
        f"JSON.stringify(localStorage).includes({json.dumps(key)}) ||"
        f" JSON.stringify(sessionStorage).includes({json.dumps(key)}) ? 'stored' : ''"
    )
    return {
        "listed": listed,
        "status": status.strip(),
        "body": body,
        "stored": stored,
        "log": browser.log,
    }


@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium)")
async def test_reference_obtains_a_token_with_client_credentials(tmp_path: Path) -> None:
    """O20, G6: in Chromium a person types the key id and the key into the reference's OAuth2
    client-credentials form; Swagger UI gets a token from /oauth/token and "try it" sends it as
    a Bearer token (not the key) and answers 200, without breaking the CSP."""
    assert CHROMIUM is not None
    data = tmp_path / "d"
    app = create_app(data)
    svc = KeyService(store_urls(data)["keys"])
    try:
        record, key = await svc.create("docs-oauth", scopes=list(ALL_SCOPES))
    finally:
        await svc.aclose()
    async with run_lifespan(app), serve(app) as base:

        def drive() -> dict[str, Any]:
            browser = Browser(CHROMIUM, tmp_path / "profile")
            try:
                return _drive_oauth(browser, base + "/api/v1/docs", record.id, key, tmp_path)
            finally:
                browser.close()

        seen = await anyio.to_thread.run_sync(drive)
    assert "Authorized" in seen["authorized"] and "Logout" in seen["authorized"], seen
    assert seen["status"] == "200", seen
    assert json.loads(seen["body"])["data"], seen["body"]
    assert "Bearer eyJ" in seen["curl"] and key not in seen["curl"], seen["curl"]
    problems = [e for e in seen["log"] if e.get("source") in ("security", "exception")]
    assert problems == [], problems


def _drive_oauth(
    browser: Browser, url: str, key_id: str, key: str, tmp_path: Path
) -> dict[str, Any]:
    browser.page("Page.navigate", url=url)
    browser.wait_for("document.querySelectorAll('.opblock-summary').length > 20")
    browser.click(".scheme-container .btn.authorize")
    form = ".modal-ux .auth-container:has(#client_id_clientCredentials)"
    browser.wait_for(f"!!document.querySelector('{form}')")
    browser.type("#client_id_clientCredentials", key_id)
    browser.type("#client_secret_clientCredentials", key)
    browser.click(f"{form} .modal-btn.auth.authorize")
    # Once authorized, the form's inputs give way to "Authorized", masked values and "Logout".
    authorized = browser.wait_for(
        "(() => { const f = Array.from(document.querySelectorAll('.modal-ux .auth-container'))"
        ".find(e => e.textContent.includes('clientCredentials'));"
        " return f && /Authorized/.test(f.textContent) ? f.textContent : ''; })()"
    )
    browser.screenshot(tmp_path / "oauth-authorized.png")
    browser.click(".modal-ux .btn-done")
    browser.click(f"{OP} .opblock-summary-control")
    browser.click(f"{OP} .try-out__btn")
    browser.click(f"{OP} .execute")
    cell = f"{OP} .live-responses-table tr.response .response-col_status"
    status = browser.wait_for(f"document.querySelector('{cell}')?.textContent")
    body = browser.eval(
        f"document.querySelector('{OP} .live-responses-table .microlight')?.textContent"
    )
    curl = browser.eval(f"document.querySelector('{OP} .curl-command')?.textContent || ''")
    browser.screenshot(tmp_path / "oauth-try-it.png")
    return {
        "authorized": authorized,
        "status": status.strip(),
        "body": body,
        "curl": curl,
        "log": browser.log,
    }
