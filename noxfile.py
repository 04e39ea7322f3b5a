"""Project sessions: ``nox -s lint typing tests`` is the test command (README, .ci/run)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff format check and lint."""
    session.install("ruff>=0.6")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py", "bench")
    session.run("ruff", "check", "src", "tests", "examples", "noxfile.py", "bench")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict over src and tests."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (real SQLite files, a private redis-server)."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "--cov=extapi_kit",
        "--cov-branch",
        "--cov-report=term",
        "--cov-fail-under=95",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the example server on the embedded default (SQLite, no Redis) on 127.0.0.1:8000."""
    session.install("-e", ".[server]")
    session.run("extapi-kit", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Stacks side by side (peers installed only in this venv) and component benches.

    Redis stacks need redis-server on PATH or REDIS_URL; the loopback load uses wrk when installed.
    ``nox -s bench -- inprocess loopback`` runs only the side-by-side suites (docs/benchmarks.md).
    """
    session.install("-e", ".[dev]")
    session.install("-r", "bench/requirements-peers.txt")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def catalogue(session: nox.Session) -> None:
    """Reliability catalogue coverage table (case id -> tests); fails when an id has no test."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "tests.test_catalogue")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Bounded soak (EXTAPI_KIT_SOAK_SECONDS, default 120) outside the default suite."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "tests/reliability/test_soak.py",
        *session.posargs,
        env={"EXTAPI_KIT_SOAK": "1"},
    )
