"""docs/graphql.md's five-minute example runs as written: its file saved, its server started
under uvicorn on 127.0.0.1, its `$` lines typed into bash and their output compared (the
machinery of tests/test_docs_run.py, in this checkout's virtualenv instead of a fresh one)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.ports import free_port
from tests.test_docs_run import ROOT, Shell, _section, parse_steps, play


def test_graphql_page_example_runs_as_written(tmp_path: Path) -> None:
    """The page's example answers what the page shows: cost in RateLimit, the same NOT_FOUND
    for a foreign and a missing project, LIST_LIMIT_EXCEEDED and INTROSPECTION_DISABLED."""
    page = ROOT / "docs" / "graphql.md"
    steps = parse_steps(_section(page, "## Five-minute example"))
    assert any(s.kind == "file" for s in steps) and len(steps) >= 7
    venv_bin = Path(sys.executable).parent
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text("--no-progress-meter\n")
    env = {k: os.environ[k] for k in ("LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    env |= {"HOME": str(home), "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin"}
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(work, env)
    try:
        ports = {"8000": str(free_port()), "8001": str(free_port()), "@wheel": ""}
        play(steps, shell, ports, "docs/graphql.md")
    finally:
        shell.close()
