"""``extapi-kit demo`` as a newcomer meets it: every line its banner prints works pasted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._demo import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The user's shell after `nox -s demo`: the session's virtualenv is not on its PATH.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def _user_env(cwd: Path) -> dict[str, str]:
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {
        "PATH": USER_PATH,
        "PWD": str(cwd),
    }


@pytest.fixture(scope="module")
def banner_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """The demo started as `nox -s demo` starts it: by the virtualenv's `extapi-kit` script."""
    cwd = tmp_path_factory.mktemp("banner")
    port = free_port()
    argv = [str(BIN / "extapi-kit"), "demo", "--port", str(port), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # as nox runs a session command
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not (lines and lines[-1] == "" and any(x.startswith("Try it") for x in lines)):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the demo exited ({proc.wait(10)}): {lines}")
            lines.append(line.rstrip("\n"))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo did not answer /health"
            time.sleep(0.1)
        yield "\n".join(lines), cwd, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _pasted_commands(banner: str) -> list[str]:
    """The banner's "Try it" lines as a user pastes them: continuation lines joined."""
    tail = banner.split("Try it", 1)[1].splitlines()[1:]
    commands: list[str] = []
    pending = ""
    for raw in tail:
        line = raw.strip()
        if not line:
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending)
        pending = ""
    return commands


@pytest.mark.slow
def test_every_banner_line_works_pasted_into_the_users_shell(
    banner_demo: tuple[str, Path, str],
) -> None:
    """G11: each command the demo banner prints runs in a shell whose PATH lacks the demo's
    virtualenv (the shell that ran `nox -s demo`) and succeeds, CLI lines included."""
    banner, cwd, _ = banner_demo
    env = _user_env(cwd)
    which = subprocess.run(["bash", "-c", "command -v extapi-kit"], env=env, capture_output=True)
    assert which.returncode != 0, "the test shell must not find extapi-kit on PATH"
    commands = _pasted_commands(banner)
    assert len(commands) >= 7 and commands[0].startswith("export KEY=")
    assert sum("keys create" in c or "keys usage" in c for c in commands) == 2
    script = "".join(f"{c}\nprintf '\\n::rc %s\\n' $?\n" for c in commands)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc"],
        input=script,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )
    outputs = re.split(r"\n::rc (\d+)\n", done.stdout)
    codes = outputs[1::2]
    assert len(codes) == len(commands), done.stdout + done.stderr
    for command, out, code in zip(commands, outputs[0::2], codes, strict=False):
        assert code == "0", f"{command!r} -> exit {code}: {out} {done.stderr}"
        assert "/problems/" not in out, f"{command!r} answered a problem: {out}"
    assert "command not found" not in done.stderr
    created = next(i for i, c in enumerate(commands) if " keys create " in c)
    assert "xk_live_" in outputs[2 * created], "keys create printed the new key"


@pytest.mark.slow
def test_demo_json_names_the_console_and_the_data_dir_is_ignored(
    banner_demo: tuple[str, Path, str], tmp_path: Path
) -> None:
    """G12: `demo --json` carries the console URL and a CLI command that works outside the
    virtualenv; every file the demo writes to its default ./extapi-demo-data is git-ignored."""
    _, cwd, _ = banner_demo
    port = free_port()
    argv = [str(BIN / "extapi-kit"), "demo", "--json", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path / "d"), "--log-level", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        assert proc.stdout is not None
        proc.stdout.close()
    base = f"http://127.0.0.1:{port}"
    assert info["console_url"] == f"{base}/admin/console"
    assert info["api_url"] == f"{base}/api/v1" and info["url"] == base
    version = subprocess.run(
        ["bash", "-c", f"{info['cli']} keys list --store {info['store_urls']['keys']} --json"],
        env=_user_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0, version.stderr

    data = cwd / "extapi-demo-data"  # the default --data-dir, which the banner demo used
    written = sorted(p.relative_to(cwd).as_posix() for p in data.rglob("*") if p.is_file())
    assert {"extapi-demo-data/admin-key.id", "extapi-demo-data/cursor.secret"} <= set(written)
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    check = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(written),
        capture_output=True,
        text=True,
    )
    assert sorted(check.stdout.split()) == written, "not ignored by .gitignore"
