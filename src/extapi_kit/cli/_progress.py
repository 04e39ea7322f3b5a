"""Progress of long CLI operations, shown on a terminal only.

A bulk replay, a prune, a migration or an ``audit query --all`` over many pages can take a while;
an operator at a terminal should see that it moves. Scripts must not: the progress line goes to
stderr, and only when stderr is a terminal and the command is not printing ``--json``, so piped
and machine-readable output never changes (issue 18 §5). Usage::

    with progress("replaying", total=len(items), quiet=args.json) as p:
        for item in items:
            ...
            p.advance()

The line is redrawn in place (``\\r``) at most every 0.1 s and finished with a newline; the label
goes through :func:`~extapi_kit.cli._output.safe` like every other printed value.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from extapi_kit.cli._output import safe

__all__ = ["Progress", "progress"]

_INTERVAL = 0.1


class Progress:
    """A progress line on ``stream`` (stderr), drawn only when it is a terminal.

    Args:
        label: what is being done, e.g. ``"replaying deliveries"``.
        total: how many steps there are, or None when unknown (a running count is shown).
        quiet: never draw (pass ``args.json``).
        stream: where to draw (default: the current ``sys.stderr``).
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        quiet: bool = False,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock or time.monotonic
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and callable(isatty) and bool(isatty())
        self._drawn_at: float | None = None
        self._width = 0

    def _text(self) -> str:
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            return f"{safe(self.label)}: {self.done}/{self.total} ({pct}%)"
        if self.done == 0:  # nothing counted (yet): a running operation, e.g. one DELETE
            return f"{safe(self.label)}..."
        return f"{safe(self.label)}: {self.done}"

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < _INTERVAL:
            return
        self._drawn_at = now
        text = self._text()
        pad = " " * max(0, self._width - len(text))  # wipe a longer previous line
        self._width = len(text)
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()

    def start(self) -> Progress:
        """Draw the first line (``label: 0``) and return self."""
        self._draw(force=True)
        return self

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more done and redraw (throttled).

        Args:
            steps: how many steps were done since the last call.
        """
        self.done += steps
        self._draw()

    def update(self, done: int, total: int | None = None) -> None:
        """Set the absolute count (and the total, when it becomes known) and redraw (throttled).

        Usable directly as an ``on_progress(done, total)`` callback.

        Args:
            done: steps done so far.
            total: the total, or None to keep the current one.
        """
        self.done = done
        if total is not None:
            self.total = total
        self._draw()

    def close(self) -> None:
        """Draw the final count and end the line."""
        if self.enabled and self._drawn_at is not None:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_at = None

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(label: str, *, total: int | None = None, quiet: bool = False) -> Progress:
    """Return a :class:`Progress` on stderr; use it as a context manager.

    Args:
        label: what is being done.
        total: how many steps, or None when unknown.
        quiet: never draw (pass ``args.json``).
    """
    return Progress(label, total=total, quiet=quiet)
