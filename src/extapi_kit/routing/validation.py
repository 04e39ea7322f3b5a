"""Request validation with pydantic: path parameters, query string and JSON body.

Everything is validated before the internal service, handler or upstream sees the request. A
failure is a 422 ``validation-error`` problem with FastAPI-shaped field errors
(``errors: [{"loc": ["query", "limit"], "msg": ..., "type": ...}]``); a body that is not JSON is
a 400 and a body with another content type a 415.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, TypeAdapter, ValidationError

from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import PROBLEMS

__all__ = [
    "json_content_type",
    "parse_query",
    "problem_from_validation",
    "validate_body",
    "validate_model",
]

_SEQUENCE_ORIGINS = (list, tuple, set, frozenset, Sequence)


def _is_multi(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in _SEQUENCE_ORIGINS:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_is_multi(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def multi_fields(model: type[BaseModel]) -> frozenset[str]:
    """Return the names (and aliases) of fields that accept several values.

    Args:
        model: a pydantic model used for a query string.
    """
    names: set[str] = set()
    for name, info in model.model_fields.items():
        if _is_multi(info.annotation):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return frozenset(names)


def parse_query(query_string: bytes, multi: frozenset[str]) -> dict[str, Any]:
    """Decode a query string into a dict for validation.

    A name repeated for a single-valued field is an error, not "first wins" or "last wins":
    if the registry and the internal app picked different copies, the value validated would not
    be the value used (HTTP parameter pollution).

    Args:
        query_string: ``scope["query_string"]``.
        multi: names that may repeat (collected into lists).

    Raises:
        ProblemError: 422 when a single-valued name repeats or the string is not decodable.
    """
    out: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _problem([_err(("query",), "invalid query string", "query_invalid")]) from None
    errors: list[dict[str, Any]] = []
    for name, value in pairs:
        if name in multi:
            out.setdefault(name, []).append(value)
        elif name in out:
            errors.append(_err(("query", name), "parameter given more than once", "duplicate"))
        else:
            out[name] = value
    if errors:
        raise _problem(errors)
    return out


def validate_model(model: type[BaseModel], data: Mapping[str, Any], where: str) -> BaseModel:
    """Validate a mapping (path or query values) against a model.

    Args:
        model: the pydantic model.
        data: the raw values (strings, lists of strings).
        where: ``"path"`` or ``"query"``, the first element of each error's ``loc``.

    Raises:
        ProblemError: 422 with field errors.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise problem_from_validation(exc, where) from None


def json_content_type(content_type: bytes | None) -> bool:
    """Return whether a Content-Type header names JSON (``application/json`` or ``*+json``).

    Args:
        content_type: the raw header value, or None.
    """
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def validate_body(adapter: TypeAdapter[Any], body: bytes, content_type: bytes | None) -> Any:
    """Parse and validate a JSON request body.

    Args:
        adapter: a TypeAdapter for the request model.
        body: the complete body.
        content_type: the request's Content-Type header.

    Raises:
        ProblemError: 415 for a non-JSON content type, 400 for malformed JSON, 422 for a body that
            does not fit the model.
    """
    if not json_content_type(content_type):
        raise ProblemError(PROBLEMS["unsupported-media-type"], detail="expected application/json")
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            raise ProblemError(PROBLEMS["bad-request"], detail="malformed JSON body") from None
        raise problem_from_validation(exc, "body") from None


def problem_from_validation(exc: ValidationError, where: str) -> ProblemError:
    """Turn a pydantic error into a 422 problem with field-level errors.

    Args:
        exc: the validation error.
        where: the first ``loc`` element (``"path"``, ``"query"``, ``"body"``).
    """
    errors = [
        _err((where, *e["loc"]), e["msg"], e["type"])
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return _problem(errors)


def _err(loc: tuple[Any, ...], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


def _problem(errors: list[dict[str, Any]]) -> ProblemError:
    return ProblemError(PROBLEMS["validation-error"], errors=errors)
