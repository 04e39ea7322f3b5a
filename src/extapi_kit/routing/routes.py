"""The declaration of one exposed route and what is precomputed from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from extapi_kit._types import ASGIApp
from extapi_kit.context import RouteSettings
from extapi_kit.routing.grants import GrantSpec, ResourceLookup, compile_grants
from extapi_kit.routing.matcher import compile_template
from extapi_kit.routing.paths import compile_path
from extapi_kit.routing.validation import multi_fields

__all__ = ["Route", "RouteEntry", "deprecation_headers"]

TargetKind = Literal["app", "handler", "upstream"]
Handler = Callable[..., Awaitable[Any]]


def _epoch(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def deprecation_headers(
    deprecated: bool | datetime, sunset: datetime | None, successor: str | None
) -> tuple[tuple[bytes, bytes], ...]:
    """Return the ``Deprecation``, ``Sunset`` and ``Link`` headers of a deprecated route.

    ``Deprecation`` is an RFC 9745 structured-field date (``@<epoch seconds>``); ``True`` without
    a date sends ``@0``, a date in the past, which RFC 9745 reads as "already deprecated".
    ``Sunset`` is an RFC 8594 HTTP-date. The successor is linked with
    ``rel="successor-version"`` (RFC 5829).

    Args:
        deprecated: False, True, or the date the route was (or will be) deprecated.
        sunset: when the route stops answering.
        successor: URI of the replacement.
    """
    out: list[tuple[bytes, bytes]] = []
    if deprecated is not False:
        stamp = _epoch(deprecated) if isinstance(deprecated, datetime) else 0
        out.append((b"deprecation", f"@{stamp}".encode()))
    if sunset is not None:
        when = sunset if sunset.tzinfo else sunset.replace(tzinfo=UTC)
        out.append((b"sunset", format_datetime(when.astimezone(UTC), usegmt=True).encode()))
    if successor:
        out.append((b"link", f'<{successor}>; rel="successor-version"'.encode("latin-1")))
    return tuple(out)


@dataclass(slots=True)
class Route:
    """One declared route (created by :meth:`ExternalAPI.expose`; read-only afterwards).

    Args:
        methods: HTTP methods (upper case).
        version: the API version segment (``"v1"``).
        path: the public path inside the version (``"/projects/{id}"``).
        template: the full public template (``"/api/v1/projects/{id}"``).
        kind: ``"app"``, ``"handler"`` or ``"upstream"``.
        app: the internal ASGI app of an ``"app"`` target.
        handler: the callable of a ``"handler"`` target.
        upstream: tool name, ``"{param}"`` naming a path parameter, or a base URL.
        internal_path: the internal path template (parameters carried over).
        options: every other declared option (scopes, models, docs, ...).
    """

    methods: tuple[str, ...]
    version: str
    path: str
    template: str
    kind: TargetKind
    app: ASGIApp | None = None
    handler: Handler | None = None
    upstream: str | None = None
    internal_path: str = ""
    scopes: tuple[str, ...] = ()
    rate_class: str | None = None
    cost: int = 1
    body_limit: int | None = None
    idempotent: bool | None = None
    public: bool = False
    ip_allow: tuple[str, ...] = ()
    query_model: type[BaseModel] | None = None
    path_model: type[BaseModel] | None = None
    request_model: Any = None
    response_model: Any = None
    response_media_type: str = "application/json"
    status_code: int = 200
    summary: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    deprecated: bool | datetime = False
    sunset: datetime | None = None
    successor: str | None = None
    resource_params: Mapping[str, str] | None = None
    resource_body_fields: Mapping[str, str] | None = None
    filter_field: Mapping[str, str] | None = None
    resource_lookup: ResourceLookup | None = None
    include_in_schema: bool = True
    operation_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Precomputed by prepare():
    request_adapter: TypeAdapter[Any] | None = None
    response_adapter: TypeAdapter[Any] | None = None
    query_multi: frozenset[str] = frozenset()
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    internal_parts: tuple[tuple[str | None, str, str], ...] = ()
    grants: GrantSpec | None = None

    def prepare(self) -> None:
        """Precompute adapters and headers so the request path does no setup."""
        self.internal_parts = compile_path(self.internal_path)
        self.grants = compile_grants(
            compile_template(self.template).params,
            self.resource_params,
            self.resource_body_fields,
            self.filter_field,
            self.resource_lookup,
        )
        if self.request_model is not None:
            self.request_adapter = TypeAdapter(self.request_model)
        # A streamed answer (text/event-stream) documents its events' model; it is not buffered
        # to be validated.
        if self.response_model is not None and self.response_media_type == "application/json":
            self.response_adapter = TypeAdapter(self.response_model)
        if self.query_model is not None:
            self.query_multi = multi_fields(self.query_model)
        self.response_headers = deprecation_headers(self.deprecated, self.sunset, self.successor)

    def is_idempotent(self, method: str, enabled: bool) -> bool:
        """Return whether ``Idempotency-Key`` handling applies to ``method`` on this route.

        Args:
            method: one of the route's methods.
            enabled: whether the stack has an idempotency layer.
        """
        if self.idempotent is not None:
            return self.idempotent
        return enabled and method in ("POST", "PATCH")

    def settings(self, method: str, idempotency_enabled: bool) -> RouteSettings:
        """Return the :class:`RouteSettings` the middlewares read for ``method``.

        Args:
            method: one of the route's methods.
            idempotency_enabled: whether the stack has an idempotency layer.
        """
        extra: dict[str, Any] = dict(self.extra)
        extra["version"] = self.version
        extra["target"] = self.kind
        if self.resource_params:
            extra["resources"] = dict(self.resource_params)
        if self.resource_body_fields:
            extra["resource_body_fields"] = dict(self.resource_body_fields)
        return RouteSettings(
            template=self.template,
            method=method,
            scopes=self.scopes,
            rate_class=self.rate_class,
            cost=self.cost,
            body_limit=self.body_limit,
            idempotent=self.is_idempotent(method, idempotency_enabled),
            public=self.public,
            ip_allow=self.ip_allow,
            extra=extra,
        )


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """What the matcher returns for one ``(template, method)``.

    Args:
        route: the declared route.
        settings: its precomputed settings (without path parameters).
    """

    route: Route
    settings: RouteSettings
