"""Coverage of the reliability catalogue: every case id is named by at least one test docstring.

Run ``python -m tests.test_catalogue`` (or ``nox -s catalogue``) for the table id -> tests.
A test marked ``xfail(strict=True)`` counts as "covered, known gap" and is listed as such.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "anchors-reliability.md"
SECURITY_PAGE = REPO_ROOT / "docs" / "security.md"

# The shared reference catalogue has 62 ids; ids past it are the project's own, added from outside
# reviews (issue 15: A14-A17, Z8-Z9, I6, M7-M11, W13-W14, G4, L12) and the first-hour work
# (issue 18: A18, G5-G13, W15-W16) the Redis Cluster/Sentinel and batching work (issue 16:
# L13-L23), the PostgreSQL stores (issue 17: a new series P1-P10), OAuth tokens (issue 19: O1-O20),
# plans, credits, leaked keys and key analytics (issue 20: K1-K22) and GraphQL (issue 21: Q1-Q14).
# All count.
_SERIES = {
    **{"A": 18, "Z": 9, "R": 5, "M": 11, "L": 23, "I": 6, "W": 16, "G": 13, "P": 10},
    **{"O": 20, "K": 22, "Q": 14},
}
_REFERENCE_SERIES = {
    **{"A": 13, "Z": 7, "R": 5, "M": 6, "L": 11, "I": 5, "W": 12, "G": 3, "P": 0},
    **{"O": 0, "K": 0, "Q": 0},
}
CATALOGUE_IDS: tuple[str, ...] = tuple(
    f"{letter}{n}" for letter, count in _SERIES.items() for n in range(1, count + 1)
)
PROJECT_IDS: tuple[str, ...] = tuple(
    f"{letter}{n}"
    for letter, count in _SERIES.items()
    for n in range(_REFERENCE_SERIES[letter] + 1, count + 1)
)
_ROW = re.compile(r"^\|\s*([AZRMLIWGPOKQ]\d{1,2})\s*\|", re.MULTILINE)
_ID = re.compile(r"(?<![A-Za-z0-9_])([AZRMLIWGPOKQ]\d{1,2})(?![0-9])")


@dataclass(frozen=True, slots=True)
class CaseRef:
    """One test function whose docstring names catalogue ids.

    Args:
        name: ``path::[Class::]function``.
        known_gap: True when the test is marked ``xfail(strict=True)``.
    """

    name: str
    known_gap: bool


def catalogue_ids(reference: Path = REFERENCE) -> tuple[str, ...]:
    """Return the case ids: the reference file's (else the fixed list), then the project's own.

    Args:
        reference: path of ``anchors-reliability.md``.
    """
    if reference.is_file():
        found = _ROW.findall(reference.read_text(encoding="utf-8"))
        if found:
            return tuple(dict.fromkeys([*found, *PROJECT_IDS]))
    return CATALOGUE_IDS


def _is_strict_xfail(decorators: list[ast.expr]) -> bool:
    for dec in decorators:
        if isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("mark.xfail"):
            for kw in dec.keywords:
                if kw.arg == "strict" and isinstance(kw.value, ast.Constant) and kw.value.value:
                    return True
    return False


def _walk(body: list[ast.stmt], prefix: str, class_gap: bool) -> Iterator[tuple[str, str, bool]]:
    for node in body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            gap = class_gap or _is_strict_xfail(node.decorator_list)
            yield from _walk(node.body, f"{prefix}::{node.name}", gap)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            doc = ast.get_docstring(node) or ""
            gap = class_gap or _is_strict_xfail(node.decorator_list)
            yield f"{prefix}::{node.name}", doc, gap


def scan_tests(tests_dir: Path = TESTS_DIR) -> dict[str, list[CaseRef]]:
    """Map each id named in a test function's docstring to the tests naming it.

    Args:
        tests_dir: root of the test tree.
    """
    table: dict[str, list[CaseRef]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(tests_dir.parent).as_posix()
        for name, doc, gap in _walk(tree.body, rel, False):
            for case in dict.fromkeys(_ID.findall(doc)):
                table.setdefault(case, []).append(CaseRef(name, gap))
    return table


def coverage() -> list[tuple[str, list[CaseRef]]]:
    """Return ``(id, tests)`` for every catalogue id, in catalogue order."""
    table = scan_tests()
    return [(case, table.get(case, [])) for case in catalogue_ids()]


def render(rows: list[tuple[str, list[CaseRef]]]) -> str:
    """Render the coverage table as text.

    Args:
        rows: the output of :func:`coverage`.
    """
    lines = []
    for case, refs in rows:
        passing = [r for r in refs if not r.known_gap]
        state = "MISSING" if not refs else ("covered" if passing else "known gap")
        lines.append(f"{case:<4} {state:<9} {len(refs):>3}  " + ", ".join(r.name for r in refs[:3]))
    covered = sum(1 for _, refs in rows if any(not r.known_gap for r in refs))
    gaps = [case for case, refs in rows if refs and all(r.known_gap for r in refs)]
    missing = [case for case, refs in rows if not refs]
    lines.append(
        f"{len(rows)} ids: {covered} covered, {len(gaps)} known gaps {gaps}, "
        f"{len(missing)} missing {missing}"
    )
    return "\n".join(lines)


def test_every_catalogue_id_has_a_test() -> None:
    """Every catalogue id is named in the docstring of at least one test function."""
    missing = [case for case, refs in coverage() if not refs]
    assert not missing, f"catalogue ids with no test: {missing}"


def test_checker_reads_docstrings_not_comments(tmp_path: Path) -> None:
    """A catalogue id in a comment does not count; one in a docstring does (checker self-test)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import pytest\n"
        "def test_a() -> None:\n    # A1\n    '''Pins Z3.'''\n"
        "@pytest.mark.xfail(strict=True, reason='gap')\n"
        "def test_b() -> None:\n    '''Pins R4.'''\n",
        encoding="utf-8",
    )
    table = scan_tests(tmp_path / "tests")
    assert set(table) == {"Z3", "R4"}
    assert table["R4"][0].known_gap and not table["Z3"][0].known_gap


def test_catalogue_has_167_ids() -> None:
    """The parsed catalogue matches the fixed list: the reference's 62 ids and the project's 105."""
    assert set(catalogue_ids()) == set(CATALOGUE_IDS)
    assert len(CATALOGUE_IDS) == 167
    assert len(PROJECT_IDS) == 105


def test_security_page_lists_every_id() -> None:
    """docs/security.md's "What we test" table has one row for every catalogue id."""
    text = SECURITY_PAGE.read_text(encoding="utf-8")
    table = text.split("## What we test", 1)[1]
    rows = _ROW.findall(table)
    assert sorted(set(rows)) == sorted(catalogue_ids())
    assert len(rows) == len(set(rows)), "an id has two rows"


def main() -> int:
    """Print the coverage table; exit 1 when an id has no test."""
    rows = coverage()
    print(render(rows))
    return 1 if any(not refs for _, refs in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
