"""The event catalogue: names checked at registration, lenient mode, schema normalisation."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.webhooks.catalogue import EventCatalogue, EventType


class JobDone(BaseModel):
    """The data of job.completed."""

    job_id: int
    ok: bool = True


def test_types_given_at_construction_are_registered_and_listed() -> None:
    """Types passed to the constructor are known, listed by name, and shown in the repr."""
    cat = EventCatalogue([EventType("job.completed", schema=JobDone), EventType("a.created")])
    assert "job.completed" in cat and "job.failed" not in cat
    assert [t.name for t in cat.list()] == ["a.created", "job.completed"]
    assert repr(cat) == "EventCatalogue(['a.created', 'job.completed'], strict=True)"


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_event_type_names_must_be_1_to_200_characters(name: str) -> None:
    """A13: an empty or oversized event type name is refused at registration."""
    with pytest.raises(ConfigurationError, match="1-200"):
        EventCatalogue().register(name)


def test_lenient_catalogue_passes_unknown_types_untouched() -> None:
    """With strict=False an unregistered type is published as is; registered ones still checked."""
    cat = EventCatalogue([EventType("job.completed", schema=JobDone)], strict=False)
    data = {"anything": ["goes"]}
    assert cat.validate("not.registered", data) is data
    assert cat.validate("job.completed", {"job_id": "7"}) == {"job_id": 7, "ok": True}
    with pytest.raises(ConfigurationError, match="does not match its schema"):
        cat.validate("job.completed", {"job_id": "seven"})
