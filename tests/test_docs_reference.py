"""Reference pages stay complete and clean: every problem type documented, the two 429 types
explained side by side, no sentence repeated (issue 18 §6)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from extapi_kit.problems import PROBLEMS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_problems_page_lists_every_registered_problem() -> None:
    """Issue 18 §6: docs/problems.md has a row (slug, status, title, type URI) for every
    registered problem, `conflict` and `idempotency-response-not-stored` included."""
    page = (DOCS / "problems.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\|.*\|$", page, re.MULTILINE))
    missing = [
        slug
        for slug, p in PROBLEMS.items()
        if f"| `{slug}` | {p.status} | {p.title} | `{p.type}` |" not in rows
    ]
    assert missing == []


@pytest.mark.parametrize("page", ["rate-limiting.md", "usage-and-quotas.md"])
def test_both_429_types_are_explained_side_by_side(page: str) -> None:
    """Issue 18 §6: the rate-limit and quota pages each hold one table row naming both 429
    problem types, so `quota-exceeded` and `quota-exhausted` are compared where they are read."""
    text = (DOCS / page).read_text(encoding="utf-8")
    both = [
        line
        for line in text.splitlines()
        if line.startswith("|")
        and PROBLEMS["quota-exceeded"].type in line
        and PROBLEMS["quota-exhausted"].type in line
    ]
    assert both, page


def test_no_docs_page_repeats_a_sentence_back_to_back() -> None:
    """Issue 18 §6: no page says the same sentence twice in a row (docs/rate-limiting.md did)."""
    repeated = []
    for path in sorted(DOCS.glob("*.md")):
        prose = " ".join(path.read_text(encoding="utf-8").split())
        sentences = re.split(r"(?<=[.!?])\s+", prose)
        repeated += [
            f"{path.name}: {a[:60]}"
            for a, b in itertools.pairwise(sentences)
            if a == b and len(a) > 20
        ]
    assert repeated == []
