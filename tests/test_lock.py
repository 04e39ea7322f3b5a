"""The tool and test environment is locked: a new release of a dependency cannot turn CI red."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / ".ci" / "constraints.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", re.MULTILINE)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    return {_norm(name): version for name, version in _PIN.findall(LOCK.read_text("utf-8"))}


def test_every_declared_requirement_is_pinned() -> None:
    """Every dependency and every locked extra's requirement has an exact pin in the lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in ("dev", "test", "server", "redis", "docs"):
        requirements += project["optional-dependencies"][extra]
    pins = _pins()
    missing = []
    for requirement in requirements:
        match = _NAME.match(requirement)
        assert match is not None, requirement
        name = _norm(match.group(1))
        if name != "extapi-kit" and name not in pins:
            missing.append(name)
    assert not missing, f"not pinned in .ci/constraints.txt: {missing} (run `nox -s lock`)"
    assert "nox" in pins, ".ci/run installs nox from the lock"


def test_sessions_install_under_the_lock() -> None:
    """Every nox session but `newest` and `lock` installs through the helper that adds `-c LOCK`."""
    tree = ast.parse((ROOT / "noxfile.py").read_text("utf-8"))
    unlocked = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name in {"install", "newest", "lock"}:
            continue
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and ast.unparse(call.func) == "session.install":
                unlocked.append(node.name)
    assert not unlocked, f"sessions installing without the lock: {unlocked}"
    run = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "-c .ci/constraints.txt nox" in run
