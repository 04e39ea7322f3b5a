"""Path templates compiled once and filled per request (``"/internal/projects/{id}"``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["PathParts", "compile_path", "render_parts", "render_path"]

_PATH_SAFE = "!$&'()*+,;=:@-._~/"
_TOKEN_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_]+)?\}")


PathParts = tuple[tuple[str | None, str, str], ...]


def compile_path(template: str) -> PathParts:
    """Split a path template into ``(param name | None, literal, encoded literal)`` parts.

    Args:
        template: e.g. ``"/internal/projects/{id}"``.
    """
    parts: list[tuple[str | None, str, str]] = []
    pos = 0
    for m in _TOKEN_RE.finditer(template):
        if m.start() > pos:
            text = template[pos : m.start()]
            parts.append((None, text, quote(text, safe=_PATH_SAFE)))
        parts.append((m.group(1), "", ""))
        pos = m.end()
    if pos < len(template):
        text = template[pos:]
        parts.append((None, text, quote(text, safe=_PATH_SAFE)))
    return tuple(parts)


def render_parts(parts: PathParts, params: Mapping[str, str]) -> tuple[str, bytes]:
    """Fill compiled path parts; return ``(path, raw_path)`` (decoded and percent-encoded).

    Args:
        parts: from :func:`compile_path`.
        params: the matched parameter values (decoded).
    """
    path: list[str] = []
    raw: list[str] = []
    for name, text, encoded in parts:
        if name is None:
            path.append(text)
            raw.append(encoded)
        else:
            value = params[name]
            path.append(value)
            # Only a {name:path} value can hold "/" (the matcher guarantees it): "/" stays.
            if value.isascii() and value.isalnum():
                raw.append(value)  # the common case (ids): nothing to encode
            else:
                raw.append(quote(value, safe=_PATH_SAFE))
    return "".join(path), "".join(raw).encode("ascii")


def render_path(template: str, params: Mapping[str, str]) -> tuple[str, bytes]:
    """Fill a path template; return ``(path, raw_path)`` (decoded and percent-encoded).

    Args:
        template: e.g. ``"/internal/projects/{id}"`` (converters allowed: ``{id:int}``).
        params: the matched parameter values (decoded).
    """
    return render_parts(compile_path(template), params)
