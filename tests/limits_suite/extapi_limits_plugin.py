"""pytest plugin: run ``limits``' own async storage/strategy tests against ``extapi-memory://``.

Loaded only by ``nox -s limits_suite`` (``-p extapi_limits_plugin`` inside the unpacked ``limits``
sdist); the project's own pytest run never collects it (its name is not ``test_*``). DESIGN §5
asks that our in-process storage pass ``limits``' storage tests like ``limits``' memory storage
does (issue 15, L12). The plugin

- selects the tests that run on the in-memory storage (parametrized ``async+memory://`` with the
  ``memory`` mark, and ``tests/aio/storage/test_memory.py``) and deselects every other backend
  (Redis, memcached, MongoDB need containers) and the backend-less base-class tests;
- with ``--extapi-memory``, hands those tests ``extapi-memory://`` and ``FlatMemoryStorage`` in
  place of ``async+memory://`` and ``MemoryStorage``;
- prints how many ran and passed, and makes the run fail when none ran or any selected test did
  not pass (a skip counts as not passed: every selected test applies to a memory storage).
"""

from __future__ import annotations

from typing import Any

import pytest
from limits.aio.storage import MemoryStorage

from extapi_kit.ratelimit.memory import FlatMemoryStorage

LIMITS_URI = "async+memory://"
EXTAPI_URI = "extapi-memory://"
_MEMORY_MODULE = "tests/aio/storage/test_memory.py"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--extapi-memory",
        action="store_true",
        help="run the memory-storage tests on extapi-memory:// instead of async+memory://",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Suite(bool(config.getoption("--extapi-memory"))))


def _selected(item: pytest.Item) -> bool:
    if item.nodeid.startswith(_MEMORY_MODULE):
        return True
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = callspec.params if callspec is not None else {}
    return params.get("uri") == LIMITS_URI and item.get_closest_marker("memory") is not None


class _Suite:
    def __init__(self, ours: bool) -> None:
        self.ours = ours
        self.outcomes: dict[str, str] = {}  # nodeid -> passed / failed / skipped

    @property
    def storage(self) -> str:
        return f"{EXTAPI_URI} (FlatMemoryStorage)" if self.ours else f"{LIMITS_URI} (limits)"

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        dropped = [item for item in items if not _selected(item)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if _selected(item)]
        if self.ours:
            for item in items:
                module = getattr(item, "module", None)
                if item.nodeid.startswith(_MEMORY_MODULE) and module is not None:
                    # The serialization test builds ``MemoryStorage()`` itself.
                    module.MemoryStorage = FlatMemoryStorage

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        if not self.ours:
            return
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        if "uri" in funcargs:
            funcargs["uri"] = EXTAPI_URI
        if funcargs.get("expected_instance") is MemoryStorage:
            funcargs["expected_instance"] = FlatMemoryStorage

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped:
            self.outcomes.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.outcomes[report.nodeid] = "passed"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        passed = sum(1 for o in self.outcomes.values() if o == "passed")
        terminalreporter.write_sep("=", f"limits suite on {self.storage}")
        terminalreporter.write_line(f"ran {len(self.outcomes)}, passed {passed}")
        for nodeid, outcome in sorted(self.outcomes.items()):
            terminalreporter.write_line(f"  {outcome:7} {nodeid}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.outcomes or any(o != "passed" for o in self.outcomes.values()):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
