"""docs/credits.md runs as written: its app file and its CLI lines, output compared."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.test_docs_run import Shell, _section, parse_steps, play

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "credits.md"


def test_try_it_section_runs_as_written(tmp_path: Path) -> None:
    """The page's example app prints what the page shows, and so do its CLI commands."""
    steps = [
        s
        for s in parse_steps(_section(PAGE, "## Try it"))
        # The environment is this checkout's: the install lines are the newcomer test's job.
        if not (s.kind == "command" and s.text.startswith(("python -m venv", "pip install")))
    ]
    assert [s.kind for s in steps] == ["file", "command", "command", "command"]
    env = {
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(work, env)
    try:
        play(steps, shell, {"8000": "8000", "8001": "8001", "@wheel": ""}, "docs/credits.md")
    finally:
        shell.close()
