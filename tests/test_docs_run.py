"""The getting-started pages run as a newcomer runs them: shell lines in order, from a wheel.

Each page section below is executed in one ``bash`` with a fresh working directory and a PATH that
holds only a plain Python (no project virtualenv): the page's own ``python -m venv`` and
``pip install "extapi-kit[server]"`` lines build the environment, with the package name replaced
by a wheel of this checkout and ``PIP_CONSTRAINT`` set to the lock (``.ci/constraints.txt``), so the
install is reproducible. What the pages mark, and how the test reads it:

- a ```` ```python title="app.py" ```` block is saved under that name before the commands after it;
- in a ```` ```console ```` block, a ``$ `` line is a command (a trailing ``\\`` continues it) and
  the lines up to the next ``$`` are its output, compared with what ran (runs of spaces are one
  space; ``...`` in a line matches any text, a line of just ``...`` any number of lines); a
  command whose output the page does not show only has to succeed;
- a command ending in ``&`` starts a server in the background; the test waits for its port;
- a ```` ```text ```` block after a console block is what the background servers print: it must
  appear in their output within a few seconds.

Ports 8000 and 8001 in a page become free loopback ports, the same ones throughout the page.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / ".ci" / "constraints.txt"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)
_PIP_NAME = re.compile(r"""(["']?)extapi-kit(\[[\w,]+\])?\1""")

# A reader takes at least this long to type the next line; without it a command could run before
# the batched audit writer (flush interval 0.2 s) has stored what the previous one caused.
TYPING_PAUSE = 0.5

pytestmark = pytest.mark.slow


@dataclass
class Step:
    """One thing a reader does: save a file, run a command, or look at the servers' output."""

    kind: str  # "file", "command" or "servers"
    text: str
    expected: str | None = None
    name: str = ""


def _section(page: Path, heading: str | None) -> str:
    text = page.read_text()
    if heading is None:
        return text
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    end = re.search(rf"^{level} ", text[start + len(heading) + 2 :], re.M)
    return text[start : start + len(heading) + 2 + end.start()] if end else text[start:]


def parse_steps(markdown: str) -> list[Step]:
    """The steps of a page section, in order (see the module docstring for the markup)."""
    steps: list[Step] = []
    for m in _FENCE.finditer(markdown):
        lang, info, body = m.group(1), m.group(2), m.group(3)
        title = re.search(r'title="([^"]+)"', info)
        if lang == "python" and title:
            steps.append(Step("file", body, name=title.group(1)))
        elif lang == "console":
            current: Step | None = None
            lines = body.splitlines()
            i = 0
            while i < len(lines):
                line = lines[i]
                if line.startswith("$ "):
                    command = line[2:]
                    while command.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        command += "\n" + lines[i]
                    current = Step("command", command)
                    steps.append(current)
                elif current is not None:
                    current.expected = (current.expected or "") + line + "\n"
                i += 1
        elif lang == "text" and steps and steps[-1].kind == "command":
            steps.append(Step("servers", "", expected=body))
    return steps


def _pattern(expected: str, *, whole: bool) -> re.Pattern[str]:
    parts = []
    for line in expected.strip("\n").splitlines():
        line = " ".join(line.split())
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        parts.append(".*".join(re.escape(p) for p in line.split("...")) + r"\n")
    body = "".join(parts)
    return re.compile(rf"\A{body}\Z" if whole else body)


def _normalise(output: str) -> str:
    lines = [" ".join(line.split()) for line in output.replace("\r", "").splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def _wait_port(port: int, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on {port} after {timeout} s:\n{log.read_text()}")


class Shell:
    """One bash the steps are typed into, stdout and stderr together, like a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background servers share its process group
        )
        self.logs: list[Path] = []
        self._n = 0

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        self._n += 1
        marker = f"::step-{self._n}-done::"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\nprintf '\\n{marker}%s\\n' $?\n".encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while marker.encode() not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                pytest.fail(f"{command!r} did not finish in {timeout} s: {out.decode()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the shell exited during {command!r}: {out.decode()}")
            out += chunk
        text, _, rest = out.decode().partition(marker)
        while not rest.endswith("\n"):
            rest += os.read(fd, 64).decode()
        return int(rest.strip()), text.removesuffix("\n")

    def start(self, command: str) -> Path:
        log = self.cwd / f".server-{len(self.logs)}.log"
        self.logs.append(log)
        code, out = self.run(f"{command.rstrip().removesuffix('&')} > {log} 2>&1 &")
        assert code == 0, out
        return log

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wheel of this checkout and, beside it, its ``[server]`` dependencies under the lock."""
    out = tmp_path_factory.mktemp("wheelhouse")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(out), str(ROOT)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("extapi_kit-*.whl")
    env = {**os.environ, "PIP_CONSTRAINT": str(LOCK)}
    deps = [*pip, "wheel", "-w", str(out), f"{wheel}[server]"]
    got = subprocess.run(deps, env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    return wheel, out


@pytest.fixture
def newcomer(
    tmp_path: Path, wheelhouse: tuple[Path, Path]
) -> Iterator[tuple[Shell, dict[str, str]]]:
    """A shell in an empty directory with only a plain Python 3 on PATH, and the port map."""
    wheel, house = wheelhouse
    bin_dir = tmp_path / ".python-bin"
    bin_dir.mkdir()
    base = getattr(sys, "_base_executable", sys.executable)
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(base)
    home = tmp_path / "home"
    home.mkdir()
    # curl draws its progress meter only when its output is not a terminal; this shell is not one.
    (home / ".curlrc").write_text("--no-progress-meter\n")
    keep = ("LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env |= {
        "HOME": str(home),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        # The lock pins every dependency; the wheelhouse built under it stands in for the index.
        "PIP_CONSTRAINT": str(LOCK),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(house),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(work, env)
    ports = {"8000": str(free_port()), "8001": str(free_port()), "@wheel": str(wheel)}
    try:
        yield shell, ports
    finally:
        shell.close()


def _localise(text: str, ports: dict[str, str]) -> str:
    for page_port in ("8000", "8001"):
        text = re.sub(rf"(?<![\w.]){page_port}(?!\d)", ports[page_port], text)
    return text


def play(steps: list[Step], shell: Shell, ports: dict[str, str], page: str) -> None:
    """Do each step as the page says and compare what is shown."""
    for step in steps:
        if step.kind == "file":
            (shell.cwd / step.name).write_text(_localise(step.text, ports))
            continue
        expected = _localise(step.expected, ports) if step.expected else None
        if step.kind == "servers":
            assert expected is not None
            pattern = _pattern(expected, whole=False)
            deadline = time.monotonic() + 15
            while True:
                logs = _normalise("".join(p.read_text() for p in shell.logs if p.exists()))
                if pattern.search(logs):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{page}: the servers never printed\n{expected}\nbut:\n{logs}")
                time.sleep(0.2)
            continue
        command = _localise(step.text, ports)
        if command.lstrip().startswith("pip install"):
            command = _PIP_NAME.sub(lambda m: f'"{ports["@wheel"]}{m.group(2) or ""}"', command)
        if command.rstrip().endswith("&"):
            port = re.search(r"--port (\d+)", command)
            if port is None:  # uvicorn's and the demo's default port, 8000, made free
                command = f"{command.rstrip().removesuffix('&')} --port {ports['8000']} &"
            log = shell.start(command)
            _wait_port(int(port.group(1) if port else ports["8000"]), log)
            continue
        time.sleep(TYPING_PAUSE)
        code, out = shell.run(command)
        assert code == 0, f"{page}: `{step.text}` exited {code}:\n{out}"
        if expected is not None:
            got = _normalise(out)
            assert _pattern(expected, whole=True).match(got), (
                f"{page}: `{step.text}` printed\n{got}\nthe page says\n{expected}"
            )


PAGES = [
    ("README.md", "## Quickstart"),
    ("docs/quickstart.md", None),
    ("docs/webhooks.md", "## Five-minute setup"),
]


@pytest.mark.parametrize(("page", "heading"), PAGES, ids=[p for p, _ in PAGES])
def test_page_runs_as_written(
    page: str, heading: str | None, newcomer: tuple[Shell, dict[str, str]]
) -> None:
    """G10: the page's shell lines, run in order in a fresh venv built from a wheel, print what
    the page says (README quickstart, docs/quickstart.md, the webhooks five-minute setup)."""
    shell, ports = newcomer
    steps = parse_steps(_section(ROOT / page, heading))
    commands = [s.text for s in steps if s.kind == "command"]
    assert any(c.rstrip().endswith("&") for c in commands), f"{page} starts no server"
    assert page == "docs/webhooks.md" or any(c.startswith("pip install") for c in commands), (
        f"{page} must say how to install"
    )
    if page == "docs/webhooks.md":  # it follows the quickstart's install
        for setup in (
            "python -m venv .venv && . .venv/bin/activate",
            'pip install "extapi-kit[server]"',
        ):
            play([Step("command", setup)], shell, ports, page)
    play(steps, shell, ports, page)


def test_parse_steps_reads_the_markup() -> None:
    """G10: the markup reader: files by title, commands with continuations, outputs, server text."""
    md = (
        '```python title="app.py"\nx = 1\n```\n\n```console\n$ a \\\n  b\nout 1\nout 2\n'
        "$ srv --port 8000 &\n```\n\n```text\nlistening\n```\n"
    )
    steps = parse_steps(md)
    assert [(s.kind, s.name) for s in steps] == [
        ("file", "app.py"),
        ("command", ""),
        ("command", ""),
        ("servers", ""),
    ]
    assert steps[1].text == "a \\\n  b" and steps[1].expected == "out 1\nout 2\n"
    assert _pattern("200 ... 429\n...\nend\n", whole=True).match("200 x y 429\nq\nr\nend\n")
    assert not _pattern("200 200 429\n", whole=True).match("200 429 429\n")
