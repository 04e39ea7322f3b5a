"""MkDocs hook: the API reference page (``reference.md``), generated on every build.

The page is not a file in docs/: it is made from ``extapi_kit.__all__`` and the ``__all__`` of
each public submodule (``extapi_kit.keys``, ``extapi_kit.fastapi``, ...), so a name added to the
public API shows up in the site without anyone editing a page, and mkdocstrings renders each one
from its Google-style docstring. An object is documented once, under the shortest public path that
exports it (``extapi_kit.KeyService``, not again under ``extapi_kit.keys``). Deeper modules are
implementation: what users need from them is re-exported one level up. Sphinx-style roles in
docstrings (``:class:`~extapi_kit.keys.KeyStore```) become links to the entry they name.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from types import ModuleType
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

PACKAGE = "extapi_kit"
PAGE = "reference.md"
_TOP_LEVEL = frozenset(importlib.import_module(PACKAGE).__all__)
# Some docstrings cross-reference Sphinx-style (:class:`~extapi_kit.keys.KeyStore`); Markdown
# renders that as the role's name followed by the target in <code>.
_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):<code>(~?)([\w.]+)(?:\(\))?</code>")
INTRO = f"""\
# API reference

Generated from the docstrings of the public API: every name in `{PACKAGE}.__all__`, then what each
public submodule exports beyond it. Import the first group from `{PACKAGE}` itself, the others
from their module (`from {PACKAGE}.fastapi import require_principal`).
"""


def _public_modules() -> list[ModuleType]:
    root = importlib.import_module(PACKAGE)
    names = [
        info.name
        for info in pkgutil.iter_modules(root.__path__, f"{PACKAGE}.")
        if not info.name.rpartition(".")[2].startswith("_")
    ]
    return [root, *(importlib.import_module(name) for name in sorted(names))]


def _identity(module: ModuleType, name: str) -> object:
    value: Any = getattr(module, name)
    # Equal small values (strings, numbers) are not the same export: key them by where they live.
    if isinstance(value, str | bytes | int | float | bool | None):
        return (module.__name__, name)
    return id(value)


def _path(module: ModuleType, name: str) -> str:
    """The dotted path mkdocstrings should render for ``module.name``.

    The public path, except where a submodule of the same name shadows it for a static reader
    (``extapi_kit.routing.build`` is both a module and the function it re-exports): then the
    object's own path.
    """
    value: Any = getattr(module, name)
    public = f"{module.__name__}.{name}"
    shadowed = hasattr(module, "__path__") and importlib.util.find_spec(public) is not None
    if shadowed and not isinstance(value, ModuleType):
        return f"{value.__module__}.{value.__qualname__}"
    return public


def _block(module: ModuleType, name: str) -> str:
    block = f"::: {_path(module, name)}\n"
    value: Any = getattr(module, name)
    if isinstance(value, dict | list | tuple | set | frozenset):
        # A table's source (PROBLEMS is a 40-line comprehension) says less than its docstring.
        block += "    options:\n      show_attribute_values: false\n"
    return block


def reference_markdown() -> str:
    """The page: one section per public module, one mkdocstrings block per exported name."""
    seen: set[object] = set()
    parts = [INTRO]
    for module in _public_modules():
        exported = []
        for name in getattr(module, "__all__", ()):
            key = _identity(module, name)
            if key not in seen and not name.startswith("__"):
                seen.add(key)
                exported.append(name)
        if not exported:
            continue
        parts.append(f"## `{module.__name__}`\n")
        # The module's docstring, without its members (they follow, one block each).
        parts.append(
            f"::: {module.__name__}\n"
            "    options:\n"
            "      show_root_heading: false\n"
            "      members: false\n"
        )
        parts.extend(_block(module, name) for name in exported)
    return "\n".join(parts)


def _role_link(match: re.Match[str]) -> str:
    """A Sphinx role as a cross-reference (optional: text only when the target has no entry)."""
    short, target = match.group(1), match.group(2)
    title = f"<code>{target.rpartition('.')[2] if short else target}</code>"
    if target.startswith(f"{PACKAGE}."):
        identifier = target
    elif target.partition(".")[0] in _TOP_LEVEL:
        identifier = f"{PACKAGE}.{target}"
    else:
        return title  # a relative name (``aclose``) or another library's
    return f'<autoref identifier="{identifier}" optional>{title}</autoref>'


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Docstrings written with Sphinx roles render as links (autorefs resolves them later)."""
    return _ROLE.sub(_role_link, html) if page.file.src_uri == PAGE else html


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated page to the site's files (before the nav is built and checked)."""
    files.append(File.generated(config, PAGE, content=reference_markdown()))
    return files
