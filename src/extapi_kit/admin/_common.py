"""Shared pieces of the admin handlers: error translation and safe serialisers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from extapi_kit.admin.models import EndpointOut, KeyOut
from extapi_kit.exceptions import (
    ConfigurationError,
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    PermissionDeniedError,
    ProblemError,
    UnsafeURLError,
)
from extapi_kit.keys.models import KeyRecord
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["CONFLICT", "endpoint_out", "epoch", "guarded", "key_out", "validation_problem"]

# Not a rejection the stack makes itself, so it is not in PROBLEMS; same URI scheme.
CONFLICT = PROBLEMS["conflict"]

HandlerFn = Callable[[HandlerRequest], Awaitable[Any]]


def validation_problem(detail: str) -> ProblemError:
    """Return a 422 ``validation-error`` problem for a value the service refused.

    Args:
        detail: the service's message (never contains a secret).
    """
    return ProblemError(PROBLEMS["validation-error"], detail=detail)


def guarded(fn: HandlerFn) -> HandlerFn:
    """Wrap a handler so service errors become problems (403, 404, 409, 422) instead of 500s.

    Args:
        fn: the handler.
    """

    @functools.wraps(fn)
    async def wrapper(req: HandlerRequest) -> Any:
        try:
            return await fn(req)
        except NotFoundError as exc:
            raise ProblemError(PROBLEMS["not-found"], detail=str(exc)) from None
        except ConflictError as exc:
            raise ProblemError(CONFLICT, detail=str(exc)) from None
        except PermissionDeniedError as exc:  # A14: never more than the calling key
            raise ProblemError(PROBLEMS["forbidden"], detail=str(exc)) from None
        except InvalidCursorError:
            # Same answer as a list route's cursor, whatever the store (issue 15, M9).
            raise ProblemError(PROBLEMS["bad-request"], detail="invalid cursor") from None
        except (ConfigurationError, UnsafeURLError) as exc:
            field = getattr(exc, "field", None)
            if isinstance(field, str):  # e.g. an unknown plan (issue 20): name the field
                loc = ["body", field]
                error = {"loc": loc, "msg": str(exc), "type": "value_error"}
                raise ProblemError(
                    PROBLEMS["validation-error"], detail=str(exc), errors=[error]
                ) from None
            raise validation_problem(str(exc)) from None

    return wrapper


def epoch(value: datetime | None) -> float | None:
    """Return a datetime (naive = UTC) as epoch seconds, or None.

    Args:
        value: the datetime.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def key_out(record: KeyRecord, now: float) -> KeyOut:
    """Return the operator view of a key (``public_dict``: no hash).

    Args:
        record: the stored record.
        now: epoch seconds, for the status.
    """
    return KeyOut.model_validate(record.public_dict(now))


def endpoint_out(endpoint: Any) -> EndpointOut:
    """Return an endpoint without its secrets (only how many it has).

    Args:
        endpoint: a :class:`~extapi_kit.webhooks.models.Endpoint`.
    """
    data = endpoint.model_dump(exclude={"secrets", "allow_loopback"})
    data["secret_count"] = len(endpoint.secrets)
    return EndpointOut.model_validate(data)
