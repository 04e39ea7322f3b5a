"""docs/plans.md runs as written: its Python example and its console session, outputs compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_docs_run import _normalise, _pattern, parse_steps

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "plans.md"


def test_plans_page_runs_as_written(tmp_path: Path) -> None:
    """Every file block is saved and every ``$`` line runs in order in a fresh directory with
    this checkout's ``extapi-kit`` and ``python``; the output shown on the page is what they
    print (stdout and stderr together)."""
    steps = parse_steps(PAGE.read_text())
    assert [s.kind for s in steps].count("command") >= 8
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTAPI_KIT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for step in steps:
        if step.kind == "file":
            (tmp_path / step.name).write_text(step.text)
            continue
        if step.kind != "command":
            continue
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", step.text],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if step.expected is None:
            assert done.returncode == 0, (step.text, done.stdout)
            continue
        got = _normalise(done.stdout)
        assert _pattern(step.expected, whole=True).match(got), (step.text, got)
