"""docs/key-analytics.md runs as written: its script prints what the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "key-analytics.md"


def test_the_pages_script_prints_what_the_page_shows(tmp_path: Path) -> None:
    """The analytics_app.py block, run with this Python, prints the console block's lines."""
    text = PAGE.read_text(encoding="utf-8")
    script = re.search(r'```python title="analytics_app.py"\n(.*?)^```', text, re.S | re.M)
    shown = re.search(r"```console\n\$ python analytics_app.py\n(.*?)^```", text, re.S | re.M)
    assert script is not None and shown is not None
    (tmp_path / "analytics_app.py").write_text(script.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "analytics_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == shown.group(1).splitlines()
    assert (tmp_path / "activity.db").exists()
