"""The event-type catalogue: which events exist, what they mean, and (optionally) their schema.

Give a catalogue to the dispatcher and every publish is checked against it: an unknown type or a
payload that does not match its pydantic schema is refused before anything is stored, so receivers
only ever see documented shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "API_KEY_NEW_IP",
    "KEY_LEAKED",
    "EventCatalogue",
    "EventType",
    "KeyLeakedData",
    "NewIPData",
]


@dataclass(frozen=True)
class EventType:
    """One documented event type.

    Args:
        name: the type, e.g. ``"job.completed"``.
        description: what happened, for the docs and the admin console.
        schema: a pydantic model the ``data`` must match (None = any JSON object).
        version: the payload version (bump on breaking changes).
        resource_fields: payload field -> resource type (``{"project_id": "projects"}``): the
            resources the event is about, which decide the scoped endpoints that receive it.
    """

    name: str
    description: str = ""
    schema: type[BaseModel] | None = None
    version: str = "1"
    resource_fields: Mapping[str, str] = field(default_factory=dict)

    def json_schema(self) -> dict[str, Any] | None:
        """Return the JSON Schema of ``data``, or None without a schema."""
        return None if self.schema is None else self.schema.model_json_schema()


class EventCatalogue:
    """The registry of event types a dispatcher may publish.

    Args:
        types: event types to register.
        strict: refuse types that are not registered (default True).
    """

    def __init__(self, types: list[EventType] | None = None, *, strict: bool = True) -> None:
        self.strict = strict
        self._types: dict[str, EventType] = {}
        for t in types or []:
            self.add(t)

    def __repr__(self) -> str:
        return f"EventCatalogue({sorted(self._types)!r}, strict={self.strict})"

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def add(self, event_type: EventType) -> EventType:
        """Register an event type (replacing one with the same name).

        Args:
            event_type: the type.
        """
        if not event_type.name or len(event_type.name) > 200:
            raise ConfigurationError("event type names are 1-200 characters")
        self._types[event_type.name] = event_type
        return event_type

    def register(
        self,
        name: str,
        description: str = "",
        *,
        schema: type[BaseModel] | None = None,
        version: str = "1",
        resource_fields: Mapping[str, str] | None = None,
    ) -> EventType:
        """Register an event type by its fields.

        Args:
            name: the type.
            description: what it means.
            schema: the pydantic model of ``data``.
            version: the payload version.
            resource_fields: payload field -> resource type, naming the event's resources.
        """
        return self.add(EventType(name, description, schema, version, dict(resource_fields or {})))

    def get(self, name: str) -> EventType | None:
        """Return the registered type, or None.

        Args:
            name: the type.
        """
        return self._types.get(name)

    def list(self) -> list[EventType]:
        """Return every registered type, sorted by name."""
        return [self._types[n] for n in sorted(self._types)]

    def validate(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Check a payload and return it as it will be sent (normalised by the schema).

        Args:
            name: the event type.
            data: the payload.

        Raises:
            ConfigurationError: for an unknown type (when strict) or a payload that does not match.
        """
        event_type = self._types.get(name)
        if event_type is None:
            if self.strict:
                raise ConfigurationError(f"unknown event type {name!r}; register it first")
            return data
        if event_type.schema is None:
            return data
        try:
            model = event_type.schema.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"data for {name!r} does not match its schema: {exc.error_count()} error(s)"
            ) from exc
        result: dict[str, Any] = model.model_dump(mode="json")
        return result


class NewIPData(BaseModel):
    """The ``data`` of ``api_key.new_ip`` (issue 20 §4).

    Args:
        key_id: the key.
        owner: its owner (the event's audience, like every ``api_key.*`` event).
        ip: the client address the key was used from.
        first_seen: when (ISO 8601 UTC).
    """

    key_id: str
    owner: str | None = None
    ip: str
    first_seen: str


API_KEY_NEW_IP = EventType(
    "api_key.new_ip",
    "An API key was used from a client address it was not seen from in the last 30 days "
    "(sent only for keys whose metadata has notify_new_ip: true).",
    NewIPData,
)
"""Register it (``catalogue.add(API_KEY_NEW_IP)``) to publish key analytics' new-IP events."""


class KeyLeakedData(BaseModel):
    """Payload of ``api_key.leaked``: one of the owner's keys was found in public.

    Published once per leak report (key and place), to the key's owner's endpoints only (it
    names ``owner``, case Z8); it never carries the key. See ``docs/leaked-keys.md``.
    """

    report_id: str
    key_id: str
    display_prefix: str
    owner: str | None = None
    url: str = ""
    source: str = ""
    action: str
    reported_at: str | None = None
    grace_ends_at: str | None = None
    status: str


KEY_LEAKED = EventType(
    "api_key.leaked",
    "An API key was found in public (secret scanning report): revoked, or flagged until "
    "grace_ends_at",
    schema=KeyLeakedData,
)
"""The ``api_key.leaked`` event type: add it to a catalogue that publishes leak reports."""
