"""``python -m bench [suite ...]``: run the benchmark suites and print one markdown table each.

Every suite is a module ``bench/<name>.py`` with ``run() -> list[dict]``. Results are also written
to ``bench-results/latest.json`` so docs/benchmarks.md can be refreshed from one run.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from typing import Any

SUITES = (
    "keys",
    "plans",
    "oauth_verify",
    "oauth_issue",
    "guards",
    "ratelimit",
    "audit",
    "idempotency",
    "routing",
    "grants",
    "graphql",
    "usage",
    "activity",
    "credits",
    "webhooks",
    "inprocess",
    "loopback",
    "layers",
    "floor",
    "scaling",
    "cluster",
    "postgres",
    "sql_paths",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for col in cols:
            value = row.get(col, "")
            if isinstance(value, float):  # ratios and per-request fractions need 2 places
                cells.append(f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the selected suites (default: all) and print their tables."""
    names = (argv if argv is not None else sys.argv[1:]) or list(SUITES)
    machine = f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# extapi_kit benchmarks — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine}\n")
    results: dict[str, Any] = {"machine": machine, "suites": {}}
    status = 0
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"## {name}: not available ({exc})\n")
            continue
        print(f"## {name}")
        try:
            rows = module.run()
        except Exception as exc:  # a failing suite must not hide the others' figures
            print(f"FAILED: {exc!r}\n")
            status = 1
            continue
        results["suites"][name] = rows
        print(_table(rows))
    os.makedirs("bench-results", exist_ok=True)
    with open(os.path.join("bench-results", "latest.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main())
