"""The one scope rule (issue 18 §4): commas and/or spaces separate, scopes are lowercase."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys._validation import SCOPE_RULE, check_scopes, parse_scopes

_SCOPE = st.from_regex(r"[a-z0-9:_.*-]{1,20}", fullmatch=True)
_SEP = st.sampled_from([",", " ", ", ", " ,", "\t", ",,", "  ", "\n"])


def test_commas_spaces_or_both_give_the_same_scopes() -> None:
    """G9: "a,b", "a b" and "a, b" are the same two scopes, in order and without repeats."""
    want = ("projects:read", "projects:write")
    for text in (
        "projects:read,projects:write",
        "projects:read projects:write",
        "projects:read, projects:write",
        " projects:read ,projects:write, projects:read ",
    ):
        assert parse_scopes(text) == want
    assert parse_scopes(["projects:read", " projects:write "]) == want
    assert parse_scopes("") == () and parse_scopes([]) == ()
    assert check_scopes("a b") == parse_scopes("a,b")


@given(st.lists(_SCOPE, min_size=1, max_size=8), st.data())
def test_any_separators_round_trip(scopes: list[str], data: st.DataObject) -> None:
    """G9: joining valid scopes with any mix of commas and whitespace parses back to them."""
    text = scopes[0]
    for scope in scopes[1:]:
        text += data.draw(_SEP) + scope
    assert parse_scopes(text) == tuple(dict.fromkeys(scopes))


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("PROJECTS:READ", "did you mean 'projects:read'?"),
        ("projects:Read, jobs:read", "did you mean 'projects:read'?"),
        ("projects;read", "lowercase"),
        (["projects:read jobs:read"], "one scope per item"),
        (["x" * 129], "1-128"),
        ([None], "strings"),
    ],
)
def test_a_bad_scope_is_refused_with_the_rule_as_a_hint(value: object, hint: str) -> None:
    """G9: upper case, other characters or two scopes in one list item are refused, and the
    message names the rule (lowercase; commas or spaces) and, for upper case, the fix."""
    with pytest.raises(ConfigurationError) as info:
        parse_scopes(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert hint in message and SCOPE_RULE in message
    assert "commas or spaces" in message and "lowercase" in message
