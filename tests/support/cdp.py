"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket).

Chromium reads commands on fd 3 and writes answers and events on fd 4, each a JSON message
ended by a NUL byte. Tests use it to drive a page as a person would (mouse clicks at an element's
box, typed text) and to read what is visible (boxes, computed style, screenshots) and the
browser's own log (Content-Security-Policy violations).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser"]


class Browser:
    """A headless Chromium with one page attached.

    Args:
        chromium: the Chromium executable.
        profile: a fresh user-data directory.
        width: the window width.
        height: the window height.
    """

    def __init__(self, chromium: str, profile: Path, width: int = 1280, height: int = 1600) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:
            # Move both ends above 10 first so neither is clobbered by the dup2 onto 3 and 4.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.page(f"{domain}.enable")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        self._answers[message["id"]] = message
                        self._lock.notify_all()
                else:
                    if message.get("method") == "Log.entryAdded":
                        self.log.append(message["params"]["entry"])
                    elif message.get("method") == "Runtime.exceptionThrown":
                        self.log.append({"source": "exception", **message["params"]})
                    self._events.put(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (raise on a protocol error).

        Args:
            method: the CDP method.
            session: the target session, or None for the browser.
            **params: its parameters.
        """
        with self._lock:
            self._next += 1
            ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        with self._lock:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(method)
                self._lock.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command to the attached page.

        Args:
            method: the CDP method.
            **params: its parameters.
        """
        return self.send(method, self.session, **params)

    def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value.

        Args:
            expression: the expression (may return a promise).
        """
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll ``expression`` until it is truthy; return its value.

        Args:
            expression: a JavaScript expression.
            timeout: seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.1)

    def box(self, selector: str) -> dict[str, float]:
        """Return the visible box of the first element matching ``selector`` (scrolled to),
        waiting up to 10 s for it to appear (pages render after their scripts run)."""
        deadline = time.monotonic() + 10
        while True:
            found = self._box(selector)
            if found and found["visible"] and found["width"] > 0 and found["height"] > 0:
                box: dict[str, float] = found
                return box
            if time.monotonic() > deadline:
                raise AssertionError(f"{selector} is not visible: {found}")
            time.sleep(0.1)

    def _box(self, selector: str) -> Any:
        return self.eval(
            f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect(), s = getComputedStyle(e);
            return {{x: r.x, y: r.y, width: r.width, height: r.height,
                     visible: s.visibility === "visible" && s.display !== "none"
                              && Number(s.opacity) > 0}}; }})()"""
        )

    def click(self, selector: str) -> None:
        """Click the middle of a visible element with the mouse.

        Args:
            selector: a CSS selector.
        """
        b = self.box(selector)
        x, y = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click into a visible field and type ``text``.

        Args:
            selector: a CSS selector.
            text: the text.
        """
        self.click(selector)
        self.page("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the viewport.

        Args:
            path: where.
        """
        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Close the browser (the pipe, then the process)."""
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        os.close(self._to_child)
        os.close(self._from_child)
