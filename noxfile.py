"""Project sessions: ``nox -s lint typing tests`` is the test command (README, .ci/run).

Every session installs under ``.ci/constraints.txt``, a lock of the whole tool and test environment
(the package's own ``dependencies`` stay ranges). A new release of a dependency therefore never
changes what CI runs; ``nox -s newest`` runs the typing check and the suite against the newest
releases to see drift early, and ``nox -s lock`` refreshes the lock on purpose.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CONSTRAINTS = ".ci/constraints.txt"
# Extras the lock covers: everything a session of ours installs.
LOCKED_EXTRAS = ("dev", "server", "redis")


def install(session: nox.Session, *args: str) -> None:
    """``pip install`` under the committed lock."""
    session.install("-c", CONSTRAINTS, *args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff format check and lint."""
    install(session, "ruff")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py", "bench")
    session.run("ruff", "check", "src", "tests", "examples", "noxfile.py", "bench")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict over src and tests."""
    install(session, "-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (real SQLite files, a private redis-server)."""
    install(session, "-e", ".[dev]")
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
    install(session, "-e", ".[server]")
    session.run("extapi-kit", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Stacks side by side (peers installed only in this venv) and component benches.

    Redis stacks need redis-server on PATH or REDIS_URL; the loopback load uses wrk when installed.
    ``nox -s bench -- inprocess loopback`` runs only the side-by-side suites (docs/benchmarks.md).
    """
    install(session, "-e", ".[dev]")
    install(session, "-r", "bench/requirements-peers.txt")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def catalogue(session: nox.Session) -> None:
    """Reliability catalogue coverage table (case id -> tests); fails when an id has no test."""
    install(session, "-e", ".[dev]")
    session.run("python", "-m", "tests.test_catalogue")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Bounded soak (EXTAPI_KIT_SOAK_SECONDS, default 120) outside the default suite."""
    install(session, "-e", ".[dev]")
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


@nox.session(python=PYTHON)
def newest(session: nox.Session) -> None:
    """Typing and tests against the newest releases of every dependency (no lock): drift early.

    Not part of the default sessions: a red run here means "refresh the lock and fix", not "CI is
    broken". Extra arguments go to pytest.
    """
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", ".[dev]")
    session.run("pip", "list", "--format=freeze", silent=False)
    session.run("mypy")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Refresh ``.ci/constraints.txt`` to the newest releases that satisfy pyproject.toml."""
    session.install("uv")
    extras = [arg for extra in LOCKED_EXTRAS for arg in ("--extra", extra)]
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        *extras,
        "--python-version",
        PYTHON,
        "--upgrade",
        "--output-file",
        CONSTRAINTS,
    )
