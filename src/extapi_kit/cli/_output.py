"""Human-readable CLI output that a terminal can only display, never obey.

Values printed by the CLI come from requests and stores other people write to: an audit
record's path or user agent, a key's name, a webhook's last error. Printed raw, a control
character in them is an instruction to the operator's terminal (``ESC [2J`` clears the
screen, ``ESC ]0;...BEL`` sets the window title; uvicorn's CVE-2020-7694 was this bug in its
log). :func:`safe` escapes every character that is not printable (C0 and C1 controls, DEL,
bidi and other format characters, line and paragraph separators) as a Python escape such as
``\\x1b`` or ``\\u202e``, and :func:`echo` prints a line through it; every table and line
printer of the CLI uses them (issue 15, M11). JSON output needs neither: ``json.dumps``
escapes control characters (and, with the default ``ensure_ascii``, everything non-ASCII).
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

__all__ = ["echo", "safe"]

# Fast path: plain ASCII text has nothing to escape.
_MAYBE_UNSAFE = re.compile(r"[^\x20-\x7e]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch.isprintable():
        return ch  # printable non-ASCII text (accents, CJK, emoji) stays readable
    return ch.encode("unicode_escape").decode("ascii")


def safe(value: object) -> str:
    """Return ``str(value)`` with every non-printable character escaped (``\\x1b``, ``\\n``).

    Args:
        value: anything to print.
    """
    text = value if isinstance(value, str) else str(value)
    return _MAYBE_UNSAFE.sub(_escape, text)


def echo(line: object = "", *, file: TextIO | None = None) -> None:
    """Print one line with :func:`safe` applied (to stdout, or ``file``).

    Args:
        line: the line, without its newline.
        file: where to print (default: the current ``sys.stdout``).
    """
    print(safe(line), file=file if file is not None else sys.stdout)
