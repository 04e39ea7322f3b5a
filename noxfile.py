"""Project sessions: ``nox -s lint typing limits_suite tests`` is the test command.

That command is the README's and the one `.ci/run` runs.

Every session installs under ``.ci/constraints.txt``, a lock of the whole tool and test environment
(the package's own ``dependencies`` stay ranges). A new release of a dependency therefore never
changes what CI runs; ``nox -s newest`` runs the typing check and the suite against the newest
releases to see drift early, and ``nox -s lock`` refreshes the lock on purpose.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "limits_suite", "tests"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CONSTRAINTS = ".ci/constraints.txt"
# Extras the lock covers: everything a session of ours installs.
LOCKED_EXTRAS = ("dev", "server", "redis", "docs", "graphql", "postgres")
# The docs site's config; its hooks (the generated API reference page) sit beside it.
DOCS_CONFIG = "docs/_mkdocs/mkdocs.yml"


def install(session: nox.Session, *args: str) -> None:
    """``pip install`` under the committed lock."""
    session.install("-c", CONSTRAINTS, *args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff format check and lint."""
    install(session, "ruff")
    paths = ("src", "tests", "examples", "noxfile.py", "bench", "docs/_mkdocs")
    session.run("ruff", "format", "--check", *paths)
    session.run("ruff", "check", *paths)


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict over src, tests, bench and the docs hooks."""
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
        # Compare at two decimals: at pytest-cov's default of none, 94.5 % already passes a 95 gate
        # (while its summary line prints "FAIL Required test coverage of 95% not reached").
        "--cov-precision=2",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs site from docs/*.md, with the API reference generated from the docstrings.

    MkDocs in strict mode: a broken link or anchor, a page missing from the nav or a docstring
    mkdocstrings cannot read fails the build. The site goes to ``.nox/docs/site/`` (open
    ``index.html``); extra arguments go to ``mkdocs build`` (``-- --site-dir DIR``). Needs no
    network once installed: no plugin fetches anything and the theme loads no web fonts.
    """
    install(session, "-e", ".[docs]")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        DOCS_CONFIG,
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life banner on every build
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


# Test tools `limits`' own suite needs that ours does not (the versions its sdist's uv.lock pins).
LIMITS_SUITE_TOOLS = ("pytest-asyncio==1.3.0", "pytest-lazy-fixtures==1.4.0", "flaky==3.8.1")


@nox.session(python=PYTHON)
def limits_suite(session: nox.Session) -> None:
    """`limits`' own async storage/strategy tests on ``memory://`` and on ``extapi-memory://``.

    Downloads the sdist of exactly the installed ``limits`` (its tests ship in it), unpacks it in
    the session's temp dir and runs ``tests/aio`` twice with ``tests/limits_suite``'s plugin: once
    as shipped (``limits``' memory storage) and once pointed at ``extapi-memory://`` (DESIGN §5,
    issue 15 L12). Tests needing Redis/memcached/MongoDB containers are deselected. Each run
    fails when no test ran or any selected test did not pass.
    """
    import os
    import shutil
    import tarfile
    from pathlib import Path

    install(session, "-e", ".", "pytest", *LIMITS_SUITE_TOOLS)
    version = session.run(
        "python",
        "-c",
        "import importlib.metadata as m; print(m.version('limits'))",
        silent=True,
    )
    version = str(version).strip()
    tmp = Path(session.create_tmp()) / f"limits-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    session.run(
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--dest",
        str(tmp),
        f"limits=={version}",
    )
    (sdist,) = tmp.glob("limits-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
    root = tmp / f"limits-{version}"
    plugin_dir = Path("tests/limits_suite").resolve()
    with session.chdir(root):
        for extra in ((), ("--extapi-memory",)):
            session.run(
                "pytest",
                "-p",
                "extapi_limits_plugin",
                "-p",
                "no:cacheprovider",
                "--noconftest",  # its conftest imports every backend's client
                "-o",
                "addopts=-rfEsxX",  # theirs adds --cov=limits and docker options
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                *extra,
                "tests/aio",
                *session.posargs,
                env={"PYTHONPATH": os.pathsep.join([str(plugin_dir), str(root)])},
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
