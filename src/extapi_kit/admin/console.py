"""The admin console: one static HTML page (plus its JS and CSS) under a strict CSP.

The files are package data (``extapi_kit/admin/static/``) read once with :mod:`importlib.resources`,
so the console works offline and needs no build step. The page holds no secret: its script asks
for an admin key, keeps it in ``sessionStorage`` (gone when the tab closes) and calls the admin
API with ``X-API-Key``. The Content-Security-Policy allows scripts, styles and fetches from the
same origin only, no inline script or style, and no framing (clickjacking).
"""

from __future__ import annotations

import html
from importlib import resources

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.exceptions import ConfigurationError

__all__ = ["CONSOLE_CSP", "ConsoleApp"]

CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_ASSETS = {
    "console.js": b"text/javascript; charset=utf-8",
    "console.css": b"text/css; charset=utf-8",
    # Declared by the page, so the browser does not ask the site root for /favicon.ico.
    "favicon.svg": b"image/svg+xml",
}
_API_PLACEHOLDER = "{{API_BASE}}"
_PATH_PLACEHOLDER = "{{CONSOLE_PATH}}"
_HINT_PLACEHOLDER = "{{KEY_HINT}}"
_PLANS_PLACEHOLDER = "{{PLANS}}"


def _read(name: str) -> bytes:
    return (resources.files("extapi_kit.admin") / "static" / name).read_bytes()


class ConsoleApp:
    """Serve the console page at ``path`` and its assets at ``path/console.js|css|favicon.svg``.

    Args:
        api_base: the admin API base path the page calls (``"/admin/v1"``).
        path: where the page lives (``"/admin/console"``).
        key_hint: the admin-key field's placeholder: the start of the keys this service
            issues (``"xk_live_..."``).
        plans: show the Plans view (the admin API has the plan routes, issue 20).
    """

    def __init__(
        self,
        *,
        api_base: str = "/admin/v1",
        path: str = "/admin/console",
        key_hint: str = "xk_live_...",
        plans: bool = False,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ConfigurationError(f"console path must start and not end with '/': {path!r}")
        self.path = path
        page = _read("console.html").decode("utf-8")
        page = page.replace(_API_PLACEHOLDER, html.escape(api_base, quote=True))
        page = page.replace(_PATH_PLACEHOLDER, html.escape(path, quote=True))
        page = page.replace(_HINT_PLACEHOLDER, html.escape(key_hint, quote=True))
        page = page.replace(_PLANS_PLACEHOLDER, "1" if plans else "0")
        self._files: dict[str, tuple[bytes, bytes]] = {
            path: (page.encode("utf-8"), b"text/html; charset=utf-8")
        }
        for name, ctype in _ASSETS.items():
            self._files[f"{path}/{name}"] = (_read(name), ctype)
        self._csp = CONSOLE_CSP.encode("ascii")

    def __repr__(self) -> str:
        return f"ConsoleApp(path={self.path!r})"

    def handles(self, path: str) -> bool:
        """Return whether a request path belongs to the console.

        Args:
            path: ``scope["path"]``.
        """
        return path == self.path or path.startswith(self.path + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one console file (GET/HEAD only).

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive.
            send: the ASGI send.
        """
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path = scope["path"]
        if path == self.path + "/":
            path = self.path
        found = self._files.get(path)
        method = scope["method"]
        if found is None:
            await _plain(send, 404, b"not found")
            return
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed", [(b"allow", b"GET, HEAD")])
            return
        body, ctype = found
        headers = [
            (b"content-type", ctype),
            (b"content-length", str(len(body)).encode()),
            (b"content-security-policy", self._csp),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
