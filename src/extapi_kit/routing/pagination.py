"""Cursor pagination, sorting and filtering helpers for list routes.

One envelope for every list (:class:`Page`: ``data``, ``next_cursor``, ``has_more``); opaque
cursors that clients cannot forge or alter (:class:`CursorCodec`, HMAC-SHA256 signed, bound to
the route, key, sort and filters of the query that produced them); :class:`ListParams` parsing
``limit`` (capped), ``cursor``, ``sort=-created_at`` or ``sortField``/``sortDirection``
restricted to declared fields, and declared equality filters; keyset pagination over a sequence
(:func:`paginate`) or as an SQL clause (:func:`keyset_sql`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel

from extapi_kit.exceptions import ConfigurationError, ProblemError
from extapi_kit.problems import PROBLEMS

if TYPE_CHECKING:
    from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["CursorCodec", "ListParams", "Page", "keyset_sql", "paginate"]

T = TypeVar("T")
_COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAC_BYTES = 16
# What a cursor position may hold: the JSON scalars a sort value or id can be.
_SCALARS = (str, int, float, bool, type(None))
_INT64 = 1 << 63


class Page(BaseModel, Generic[T]):
    """The list envelope: one page of items and the cursor of the next.

    Args:
        data: the items of this page.
        next_cursor: opaque cursor for the next page, None on the last page.
        has_more: whether another page exists.
    """

    data: list[T]
    next_cursor: str | None = None
    has_more: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bad_cursor() -> ProblemError:
    return ProblemError(PROBLEMS["bad-request"], detail="invalid cursor")


def _foreign_cursor() -> ProblemError:
    return ProblemError(PROBLEMS["bad-request"], detail="cursor does not match this query")


class CursorCodec:
    """Encode and verify opaque, signed cursors (``base64url(json).base64url(hmac)``).

    Args:
        secret: the signing secret (at least 16 bytes); never logged or shown in repr.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ConfigurationError("cursor secret must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "CursorCodec(<secret>)"

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, state: Mapping[str, Any]) -> str:
        """Return the cursor for a JSON-serialisable state.

        Args:
            state: what the next page needs (last sort value, last id, query binding).
        """
        payload = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, cursor: str) -> dict[str, Any]:
        """Verify a cursor and return its state.

        Args:
            cursor: the cursor a client sent back.

        Raises:
            ProblemError: 400 ``bad-request`` for a malformed, forged or altered cursor.
        """
        body, sep, mac = cursor.partition(".")
        if not sep or len(cursor) > 4096:
            raise _bad_cursor()
        try:
            payload, got = _unb64(body), _unb64(mac)
        except ValueError:
            raise _bad_cursor() from None
        # Only the canonical encoding is accepted, so no two strings name the same cursor.
        if _b64(payload) != body or _b64(got) != mac:
            raise _bad_cursor()
        if not hmac.compare_digest(got, self._mac(payload)):
            raise _bad_cursor()
        state = json.loads(payload)
        if not isinstance(state, dict):
            raise _bad_cursor()
        return state


def _invalid(name: str, msg: str) -> ProblemError:
    return ProblemError(
        PROBLEMS["validation-error"],
        errors=[{"loc": ["query", name], "msg": msg, "type": "value_error"}],
    )


@dataclass(frozen=True, slots=True)
class ListParams:
    """Parsed list parameters (build with :meth:`from_query`).

    Args:
        limit: page size (already capped).
        cursor: the raw cursor, or None for the first page.
        sort_field: the declared field to sort by.
        descending: sort direction.
        filters: declared equality filters present in the query.
        route: what else the cursor is bound to: the route and the key
            (:meth:`from_request` sets it to the method, the path and the key id).
    """

    limit: int
    cursor: str | None = None
    sort_field: str = "id"
    descending: bool = False
    filters: Mapping[str, str] = field(default_factory=dict)
    route: str = ""

    @classmethod
    def from_query(
        cls,
        query: Mapping[str, str],
        *,
        sortable: Iterable[str] = ("id",),
        filters: Iterable[str] = (),
        default_sort: str | None = None,
        default_limit: int = 20,
        max_limit: int = 100,
        route: str = "",
    ) -> ListParams:
        """Parse ``limit``, ``cursor``, ``sort`` or ``sortField``/``sortDirection`` and filters.

        Args:
            query: query parameters (one value per name).
            sortable: fields a client may sort by; anything else is a 422.
            filters: fields a client may filter on (equality); others are ignored.
            default_sort: ``"-created_at"`` style default; the first sortable field otherwise.
            default_limit: limit when none is given.
            max_limit: the cap; larger values are a 422, not silently clamped.
            route: binds cursors to a route and key (any string naming both); a cursor made
                under another value is a 400. :meth:`from_request` fills it in.

        Raises:
            ProblemError: 422 ``validation-error`` naming the bad parameter.
        """
        allowed = tuple(sortable)
        raw_limit = query.get("limit")
        limit = default_limit
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_limit:
                raise _invalid("limit", f"must be an integer from 1 to {max_limit}")
            limit = int(raw_limit)
        spec = query.get("sort")
        if spec is None and "sortField" in query:
            direction = query.get("sortDirection", "asc").lower()
            if direction not in ("asc", "desc"):
                raise _invalid("sortDirection", "must be 'asc' or 'desc'")
            spec = ("-" if direction == "desc" else "") + query["sortField"]
        if spec is None:
            spec = default_sort or allowed[0]
        descending = spec.startswith("-")
        sort_field = spec.lstrip("-+")
        if sort_field not in allowed:
            raise _invalid("sort", f"must be one of: {', '.join(allowed)}")
        chosen = {name: query[name] for name in filters if name in query}
        return cls(limit, query.get("cursor") or None, sort_field, descending, chosen, route)

    @classmethod
    def from_request(
        cls,
        req: HandlerRequest,
        *,
        sortable: Iterable[str] = ("id",),
        filters: Iterable[str] = (),
        default_sort: str | None = None,
        default_limit: int = 20,
        max_limit: int = 100,
    ) -> ListParams:
        """Parse a handler request's query, binding cursors to its path and key.

        A cursor from ``/models`` sent to ``/projects/1/assets``, from another project's list,
        or from another key's listing is a 400 ``bad-request``, even when sort and filters
        match (issue 15, M8).

        Args:
            req: the handler request (its query string, method, path and principal).
            sortable: fields a client may sort by; anything else is a 422.
            filters: fields a client may filter on (equality); others are ignored.
            default_sort: ``"-created_at"`` style default; the first sortable field otherwise.
            default_limit: limit when none is given.
            max_limit: the cap; larger values are a 422, not silently clamped.
        """
        raw = bytes(req.scope.get("query_string", b"")).decode("latin-1")
        query = dict(parse_qsl(raw, keep_blank_values=True))
        key_id = req.principal.key_id if req.principal is not None else ""
        return cls.from_query(
            query,
            sortable=sortable,
            filters=filters,
            default_sort=default_sort,
            default_limit=default_limit,
            max_limit=max_limit,
            route=f"{req.method} {req.scope.get('path', '')} {key_id}",
        )

    def binding(self) -> list[Any]:
        """Return what a cursor is bound to: a cursor from another query is refused."""
        return [self.sort_field, self.descending, sorted(self.filters.items()), self.route]


def _get(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def _position(params: ListParams, codec: CursorCodec) -> tuple[Any, Any] | None:
    if params.cursor is None:
        return None
    state = codec.decode(params.cursor)
    if state.get("b") != json.loads(json.dumps(params.binding())):
        raise _foreign_cursor()
    position = state.get("v"), state.get("id")
    # Signed is not the same as fitting this list: a cursor signed under the same secret by an
    # older version or another list may hold values of other types (issue 15, M8).
    if not all(isinstance(x, _SCALARS) for x in position):
        raise _foreign_cursor()
    return position


def _after(rows: list[T], key: Callable[[T], Any], position: Any, descending: bool) -> list[T]:
    try:
        if descending:
            return [it for it in rows if key(it) < position]
        return [it for it in rows if key(it) > position]
    except TypeError:  # e.g. a string id against integer ids
        raise _foreign_cursor() from None


def paginate(
    items: Iterable[T],
    params: ListParams,
    codec: CursorCodec,
    *,
    id_field: str = "id",
    serialize: Callable[[T], Any] | None = None,
    where: Callable[[T], bool] | None = None,
) -> Page[Any]:
    """Return one page of ``items`` (keyset pagination on ``(sort field, id)``).

    Items are filtered by ``params.filters`` (string equality), sorted by the sort field with
    the id as tie-breaker, and the page starts strictly after the cursor's position, so pages
    never overlap or skip items even when items before the cursor are added or removed.

    Args:
        items: dicts or objects with the sort field, the filter fields and ``id_field``.
        params: the parsed list parameters.
        codec: signs and verifies cursors.
        id_field: the unique tie-breaker field.
        serialize: turns an item into what goes in ``data`` (default: the item).
        where: keeps only the items it returns True for, before paging, e.g. the key's
            grants (``request.grant_filter("projects", "project_id")``), so no page is short.
    """
    rows = [it for it in items if all(str(_get(it, k)) == v for k, v in params.filters.items())]
    if where is not None:
        rows = [it for it in rows if where(it)]
    f = params.sort_field

    def sort_key(it: T) -> tuple[Any, Any]:
        return _get(it, f), _get(it, id_field)

    rows.sort(key=sort_key, reverse=params.descending)
    position = _position(params, codec)
    if position is not None:
        rows = _after(rows, sort_key, position, params.descending)
    page = rows[: params.limit]
    has_more = len(rows) > params.limit
    next_cursor = None
    if has_more and page:
        last = page[-1]
        next_cursor = codec.encode(
            {"v": _get(last, f), "id": _get(last, id_field), "b": params.binding()}
        )
    data = [serialize(it) for it in page] if serialize else list(page)
    return Page[Any](data=data, next_cursor=next_cursor, has_more=has_more)


def keyset_sql(
    params: ListParams,
    codec: CursorCodec,
    *,
    id_column: str = "id",
    allowed: Mapping[str, Iterable[Any] | None] | None = None,
) -> tuple[str, list[Any]]:
    """Return ``(sql_fragment, args)``: ``WHERE ... ORDER BY ... LIMIT ?`` for keyset pages.

    Column names come only from the declared fields :class:`ListParams` accepted, never from
    raw input. Fetch ``limit + 1`` rows (the fragment does) to know ``has_more``.

    Args:
        params: the parsed list parameters.
        codec: verifies the cursor.
        id_column: the unique tie-breaker column.
        allowed: column -> permitted values (``IN``), e.g. ``{"project_id":
            request.allowed_ids("projects")}``; None values mean unrestricted.
    """
    clauses: list[str] = []
    args: list[Any] = []
    for column, values in sorted((allowed or {}).items()):
        if values is None:
            continue
        if not _COLUMN_RE.fullmatch(column):
            raise ConfigurationError(f"invalid column name {column!r}")
        ids = sorted(values)
        clauses.append(f'"{column}" IN ({", ".join("?" * len(ids))})' if ids else "1 = 0")
        args.extend(ids)
    for name, value in sorted(params.filters.items()):
        clauses.append(f'"{name}" = ?')
        args.append(value)
    position = _position(params, codec)
    if position is not None and any(
        isinstance(x, int) and not -_INT64 <= x < _INT64 for x in position
    ):
        raise _foreign_cursor()  # no SQL integer holds it
    op = "<" if params.descending else ">"
    col = f'"{params.sort_field}"'
    if position is not None:
        clauses.append(f'({col}, "{id_column}") {op} (?, ?)')
        args.extend(position)
    direction = "DESC" if params.descending else "ASC"
    sql = ("WHERE " + " AND ".join(clauses) + " " if clauses else "") + (
        f'ORDER BY {col} {direction}, "{id_column}" {direction} LIMIT ?'
    )
    args.append(params.limit + 1)
    return sql, args


def page_from_rows(
    rows: Sequence[Mapping[str, Any]],
    params: ListParams,
    codec: CursorCodec,
    *,
    id_column: str = "id",
) -> Page[Any]:
    """Turn the ``limit + 1`` rows fetched with :func:`keyset_sql` into a :class:`Page`.

    Args:
        rows: fetched rows (mappings).
        params: the parsed list parameters.
        codec: signs the next cursor.
        id_column: the unique tie-breaker column.
    """
    page = list(rows[: params.limit])
    has_more = len(rows) > params.limit
    cursor = None
    if has_more and page:
        last = page[-1]
        cursor = codec.encode(
            {"v": last[params.sort_field], "id": last[id_column], "b": params.binding()}
        )
    return Page[Any](data=page, next_cursor=cursor, has_more=has_more)
