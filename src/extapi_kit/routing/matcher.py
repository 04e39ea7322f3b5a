"""Precompiled path matching for the route registry.

Matching works on ``scope["path"]`` exactly as the server gave it (already percent-decoded, never
normalised), so the decision the registry makes is the decision for the bytes the internal app
would see (case Z2): ``//``, ``/./``, a trailing slash or different letter case simply do not
match a declared template and end in 404.

Static templates live in a dict; templates with parameters are compiled to one regex each and
grouped by segment count, so a lookup tries only the templates that can possibly match. A
``{name:path}`` parameter (greedy, several segments) is tried last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit.exceptions import ConfigurationError

__all__ = ["CONVERTERS", "CompiledTemplate", "Matcher", "compile_template"]

# Converter name -> regex for one parameter. ``path`` may span segments and must come last.
CONVERTERS: dict[str, str] = {
    "str": r"[^/]+",
    # At most 18 digits: every match fits a signed 64-bit integer (SQLite INTEGER, most
    # databases' BIGINT), so an oversized id is a 404 here, not an overflow in the service.
    "int": r"[0-9]{1,18}",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "path": r"[^/].*",
}
_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")
# Dot segments are never a valid parameter: forwarded or proxied, an HTTP client or the
# internal app could resolve them and reach a path the registry never matched (Z2).
_DOT_SEGMENTS = frozenset({".", ".."})


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One template compiled for matching.

    Args:
        template: the full public template (``"/api/v1/projects/{id}"``).
        regex: the compiled regex, or None for a static template.
        params: parameter names in order.
        converters: parameter name -> converter name.
        segments: the number of ``/`` separated segments (-1 when greedy).
    """

    template: str
    regex: re.Pattern[str] | None
    params: tuple[str, ...]
    converters: Mapping[str, str]
    segments: int

    @property
    def greedy(self) -> bool:
        """Whether the template ends in a ``{name:path}`` parameter."""
        return self.segments < 0


def compile_template(template: str) -> CompiledTemplate:
    """Compile a path template such as ``/projects/{id:int}/files/{rest:path}``.

    Args:
        template: the template; must start with ``/``.

    Raises:
        ConfigurationError: for a malformed template, an unknown converter, a duplicate name or
            a ``path`` parameter that is not the last element.
    """
    if not template.startswith("/"):
        raise ConfigurationError(f"path template must start with '/': {template!r}")
    pattern = ""
    pos = 0
    names: list[str] = []
    converters: dict[str, str] = {}
    greedy = False
    for m in _PARAM_RE.finditer(template):
        if greedy:
            raise ConfigurationError(f"a {{name:path}} parameter must be last: {template!r}")
        name, conv = m.group(1), m.group(2) or "str"
        if conv not in CONVERTERS:
            raise ConfigurationError(
                f"unknown converter {conv!r} in {template!r}; known: {', '.join(CONVERTERS)}"
            )
        if name in converters:
            raise ConfigurationError(f"duplicate parameter {name!r} in {template!r}")
        literal = template[pos : m.start()]
        if "{" in literal or "}" in literal:
            raise ConfigurationError(f"malformed path template: {template!r}")
        pattern += re.escape(literal) + f"(?P<{name}>{CONVERTERS[conv]})"
        names.append(name)
        converters[name] = conv
        greedy = conv == "path"
        pos = m.end()
    tail = template[pos:]
    if "{" in tail or "}" in tail or (greedy and tail):
        raise ConfigurationError(f"malformed path template: {template!r}")
    pattern += re.escape(tail)
    segments = -1 if greedy else template.count("/")
    # fullmatch + DOTALL: "$" would also match before a trailing newline.
    regex = re.compile(pattern, re.DOTALL) if names else None
    return CompiledTemplate(template, regex, tuple(names), converters, segments)


def _params_ok(params: dict[str, str], converters: Mapping[str, str]) -> bool:
    for name, value in params.items():
        if converters[name] == "path":
            if any(seg in _DOT_SEGMENTS or not seg for seg in value.split("/")):
                return False
        elif value in _DOT_SEGMENTS:
            return False
    return True


@dataclass(slots=True)
class _Node:
    compiled: CompiledTemplate
    methods: dict[str, Any] = field(default_factory=dict)


class Matcher:
    """A precompiled table of ``(template, method) -> entry``.

    Args:
        entries: ``(template, method, entry)`` triples; the entry is returned on a match.
    """

    __slots__ = ("_dynamic", "_greedy", "_static")

    def __init__(self, entries: Iterable[tuple[str, str, Any]] = ()) -> None:
        self._static: dict[str, dict[str, Any]] = {}
        by_template: dict[str, _Node] = {}
        for template, method, entry in entries:
            node = by_template.get(template)
            if node is None:
                node = by_template[template] = _Node(compile_template(template))
            if method in node.methods:
                raise ConfigurationError(f"route declared twice: {method} {template}")
            node.methods[method] = entry
        self._dynamic: dict[int, list[_Node]] = {}
        self._greedy: list[_Node] = []
        for node in by_template.values():
            c = node.compiled
            if c.regex is None:
                self._static[c.template] = node.methods
            elif c.greedy:
                self._greedy.append(node)
            else:
                self._dynamic.setdefault(c.segments, []).append(node)

    def match(self, path: str, method: str) -> tuple[Any, dict[str, str], frozenset[str]]:
        """Look a request up.

        Returns ``(entry, params, allowed)``: on a match ``entry`` is the declared entry; when
        the path exists with other methods ``entry`` is None and ``allowed`` names them (405);
        when nothing matches both are empty (404). HEAD falls back to a GET entry.

        Args:
            path: ``scope["path"]`` exactly as received.
            method: the request method exactly as received (case-sensitive, RFC 9110 §9.1).
        """
        allowed: set[str] = set()
        methods = self._static.get(path)
        if methods is not None:
            entry = _pick(methods, method)
            if entry is not None:
                return entry, {}, frozenset()
            allowed.update(methods)
        for node in self._dynamic.get(path.count("/"), ()):
            found = self._try(node, path, method, allowed)
            if found is not None:
                return found
        for node in self._greedy:
            found = self._try(node, path, method, allowed)
            if found is not None:
                return found
        return None, {}, frozenset(allowed)

    @staticmethod
    def _try(
        node: _Node, path: str, method: str, allowed: set[str]
    ) -> tuple[Any, dict[str, str], frozenset[str]] | None:
        regex = node.compiled.regex
        m = regex.fullmatch(path) if regex is not None else None
        if m is None:
            return None
        params = m.groupdict()
        if not _params_ok(params, node.compiled.converters):
            return None
        entry = _pick(node.methods, method)
        if entry is None:
            allowed.update(node.methods)
            return None
        return entry, params, frozenset()


def _pick(methods: Mapping[str, Any], method: str) -> Any:
    entry = methods.get(method)
    if entry is None and method == "HEAD":
        entry = methods.get("GET")
    return entry
