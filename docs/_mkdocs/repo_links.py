"""MkDocs hook: links from a page to repository files outside docs/ (README, examples).

On GitHub such a link (``../examples/guards_app.py``) opens the file; the site has no copy of it,
and MkDocs reports it as not found. Here it is checked instead: a target that does not exist in the
repository is a warning (so ``--strict`` fails, as for any broken link), and one that does is shown
as its repository path in code, without a link. Links inside docs/ are left to MkDocs' own checks.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.plugins.extapi_kit.repo_links")

# Fenced code blocks are left alone; inline links elsewhere are looked at.
_FENCE = re.compile(r"^([ \t]*)(```|~~~).*?^\1\2[ \t]*$", re.S | re.M)
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


def _unlink(text: str, page: Page, docs: Path) -> str:
    repo = docs.parent
    page_dir = (docs / page.file.src_path).parent

    def replace(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
            return match.group(0)  # a URL or an absolute link: not a repository path
        dest = Path(os.path.normpath(page_dir / target))  # symlinks are not followed
        if dest == docs or docs in dest.parents:
            return match.group(0)
        if repo not in dest.parents or not dest.exists():
            log.warning(
                "Doc file '%s' links to '%s', not a repository file.", page.file.src_uri, target
            )
            return match.group(0)
        path = dest.relative_to(repo).as_posix()
        return label if path in label else f"{label} (`{path}`)"

    return _LINK.sub(replace, text)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Check and unlink the page's links that leave docs/ (fenced code is left as written)."""
    docs = Path(os.path.normpath(config.docs_dir))
    out, last = [], 0
    for fence in _FENCE.finditer(markdown):
        out += [_unlink(markdown[last : fence.start()], page, docs), fence.group(0)]
        last = fence.end()
    out.append(_unlink(markdown[last:], page, docs))
    return "".join(out)
