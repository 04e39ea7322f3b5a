"""`extapi-kit --help` stays fast: building the parser loads none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys


def test_help_loads_no_heavy_dependency() -> None:
    """Each command imports its store, HTTP and validation libraries only when it runs."""
    code = (
        "import sys\n"
        "from extapi_kit.cli import build_parser\n"
        "build_parser()\n"
        "heavy = ('httpx', 'pydantic', 'argon2', 'redis', 'limits', 'starlette', 'sqlite3')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
