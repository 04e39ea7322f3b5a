"""docs/leaked-keys.md: its runnable example runs and prints what the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "leaked-keys.md"


def test_runnable_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    """K11, docs: leak_demo.py (a local key pair plays the provider) revokes the reported key,
    notifies its owner and answers one true and one false positive, as the page says."""
    text = PAGE.read_text()
    script = re.search(r'```python title="leak_demo.py"\n(.*?)^```', text, re.S | re.M)
    shown = re.search(r"\$ python leak_demo.py\n(.*?)^```", text, re.S | re.M)
    assert script is not None and shown is not None
    (tmp_path / "leak_demo.py").write_text(script.group(1))
    done = subprocess.run(
        [sys.executable, "leak_demo.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == shown.group(1).splitlines()
