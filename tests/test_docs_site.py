"""The docs site builds in strict mode, and strict mode really fails on broken docs (issue 18 §7).

Runs the same command as ``nox -s docs`` (MkDocs, ``docs/_mkdocs/mkdocs.yml``) into a temp dir.
Skipped only when the docs tools are not installed (the ``dev`` extra brings them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import extapi_kit

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path("docs", "_mkdocs", "mkdocs.yml")

for _tool in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
    pytest.importorskip(_tool, reason="the docs tools come with the dev extra (extapi-kit[docs])")

pytestmark = pytest.mark.slow


def _build(repo: Path, site: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(repo / CONFIG)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]


def test_site_builds_strict_with_the_api_reference(tmp_path: Path) -> None:
    """issue 18 §7: the site builds with no warning and documents every name in __all__."""
    site = tmp_path / "site"
    result = _build(ROOT, site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _warnings(result.stdout + result.stderr) == []

    pages = {path.name for path in site.glob("*.html")}
    assert {f"{md.stem}.html" for md in (ROOT / "docs").glob("*.md")} <= pages
    reference = (site / "reference.html").read_text("utf-8")
    ids = set(re.findall(r'id="(extapi_kit[\w.]*)"', reference))
    public = {name for name in extapi_kit.__all__ if not name.startswith("__")}
    missing = sorted(name for name in public if f"extapi_kit.{name}" not in ids)
    assert not missing, f"not in the API reference: {missing}"
    # A submodule's own exports are documented there too, from their docstrings.
    assert "extapi_kit.fastapi.require_principal" in ids
    assert "Args:" not in reference  # Google-style sections are parsed, not shown raw
    assert not re.search(r":(class|meth|func|mod|attr|data):<code>", reference)  # Sphinx roles


def test_strict_build_fails_on_broken_links_and_unlisted_pages(tmp_path: Path) -> None:
    """issue 18 §7: a missing page, a missing anchor, a missing repo file, a page not in the nav."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", repo / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("src", "examples", "README.md"):
        (repo / name).symlink_to(ROOT / name)
    with (repo / "docs" / "cli.md").open("a", encoding="utf-8") as page:
        page.write("\n[a](no-such-page.md) [b](quickstart.md#no-such-heading)")
        page.write(" [c](../examples/no_such_example.py)\n")
    (repo / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")

    result = _build(repo, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "warnings in strict mode" in output, output
    warnings = "\n".join(_warnings(output))
    assert "'no-such-page.md', but the target is not found" in warnings
    assert "does not contain an anchor '#no-such-heading'" in warnings
    assert "'../examples/no_such_example.py', not a repository file" in warnings
    assert "orphan.md" in output and 'not included in the "nav"' in warnings
