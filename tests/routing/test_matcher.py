"""Template compilation and precompiled matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing.matcher import Matcher, compile_template
from extapi_kit.routing.targets import render_path


def test_static_dynamic_greedy_and_head() -> None:
    """Static before dynamic, greedy last; HEAD falls back to GET; 405 info lists methods."""
    m = Matcher(
        [
            ("/a/new", "GET", "static"),
            ("/a/{id:int}", "GET", "int"),
            ("/a/{name}", "POST", "str"),
            ("/f/{rest:path}", "GET", "greedy"),
        ]
    )
    assert m.match("/a/new", "GET")[0] == "static"
    assert m.match("/a/12", "GET") == ("int", {"id": "12"}, frozenset())
    assert m.match("/a/12", "HEAD")[0] == "int"
    assert m.match("/a/x", "POST")[1] == {"name": "x"}
    assert m.match("/a/x", "GET") == (None, {}, frozenset({"POST"}))
    assert m.match("/a/new", "DELETE")[2] == frozenset({"GET", "POST"})
    assert m.match("/f/a/b/c", "GET")[1] == {"rest": "a/b/c"}
    assert m.match("/nope", "GET") == (None, {}, frozenset())


@pytest.mark.parametrize(
    "path",
    [
        "/a/..",
        "/a/.",
        "/f/a/../b",
        "/f/./b",
        "/f/a//b",
        "/f//a",
        "/f/",
        "/a/",
        "/a",
        "/A/new",
        "/a/new/",
    ],
)
def test_tricky_paths_do_not_match(path: str) -> None:
    """Z2: dot segments, empty segments, case and trailing slashes never match a template."""
    m = Matcher([("/a/new", "GET", 1), ("/a/{id}", "GET", 2), ("/f/{rest:path}", "GET", 3)])
    assert m.match(path, "GET")[0] is None


@pytest.mark.parametrize(
    "template", ["no-slash", "/a/{x:float}", "/a/{x}/{x}", "/a/{p:path}/b", "/a/{x", "/a/x}"]
)
def test_bad_templates(template: str) -> None:
    """Malformed templates fail at declaration time."""
    with pytest.raises(ConfigurationError):
        compile_template(template)


def test_duplicate_route() -> None:
    """The same (template, method) twice is a configuration error."""
    with pytest.raises(ConfigurationError):
        Matcher([("/a", "GET", 1), ("/a", "GET", 2)])


segment = st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@given(segment, st.lists(segment, min_size=1, max_size=4))
def test_matched_params_render_back(name: str, rest: list[str]) -> None:
    """Rendering the matched params into the same template reproduces the path exactly."""
    template = "/p/{name}/files/{rest:path}"
    path = f"/p/{name}/files/{'/'.join(rest)}"
    m = Matcher([(template, "GET", "x")])
    entry, params, _ = m.match(path, "GET")
    assert entry == "x"
    rendered, raw = render_path(template, params)
    assert rendered == path
    assert raw.isascii() and b"%2F" not in raw


def test_int_parameters_fit_64_bits() -> None:
    """Z4: an int parameter of 19+ digits never matches, so no service sees an overflowing id."""
    m = Matcher([("/a/{id:int}", "GET", "int")])
    assert m.match("/a/" + "9" * 18, "GET")[0] == "int"
    assert m.match("/a/" + "9" * 19, "GET")[0] is None
