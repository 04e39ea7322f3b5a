"""Bounds of every webhook setting, checked where a value enters (Python API, admin, CLI).

A value outside these bounds used to be accepted and then silently ignored or worse: a
``rate_limit`` of ``inf`` or ``1e308`` paces nothing, one of ``1e-300`` never sends, a secret
rotation grace of ``1e308`` s keeps the old secret signing forever (M10), and a port no socket
accepts made every attempt raise (W14). Each check raises :class:`ConfigurationError` naming the
field, which the HTTP layers turn into a 422 problem.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_RATE_LIMIT",
    "MAX_SECRET_GRACE",
    "MAX_URL_LENGTH",
    "MIN_RATE_LIMIT",
    "ConcurrencyField",
    "RateLimitField",
    "URLField",
    "check_concurrency",
    "check_grace",
    "check_number",
    "check_rate_limit",
    "check_url_port",
]

# Deliveries per second an endpoint may be paced at: one per 1000 s up to 1000 a second.
MIN_RATE_LIMIT = 0.001
MAX_RATE_LIMIT = 1000.0
# In-flight attempts per endpoint.
MAX_CONCURRENCY = 1000
# How long a rotated-out signing secret may keep signing: 30 days.
MAX_SECRET_GRACE = 30 * 86400.0
MAX_URL_LENGTH = 2000


def check_number(
    value: Any,
    field: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    unit: str = "",
) -> float:
    """Return ``value`` as a float after checking it is a finite number within the bounds.

    Args:
        value: the value.
        field: its name, for the error message.
        low: the smallest value allowed.
        high: the largest value allowed.
        low_open: ``low`` itself is not allowed.
        unit: appended to the bounds in the message (``" s"``).

    Raises:
        ConfigurationError: naming ``field`` and the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{field} must be a number, got {type(value).__name__}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        side = "above" if low_open else "from"
        raise ConfigurationError(
            f"{field} must be a finite number {side} {low:g} up to {high:g}{unit}, got {value!r}"
        )
    return number


def check_rate_limit(value: float | None, field: str = "rate_limit") -> float | None:
    """Check an endpoint's deliveries per second (None = unlimited).

    Args:
        value: the rate.
        field: its name, for the error message.
    """
    if value is None:
        return None
    return check_number(value, field, low=MIN_RATE_LIMIT, high=MAX_RATE_LIMIT, unit="/s")


def check_concurrency(
    value: int | None, field: str = "max_concurrency", *, high: int = MAX_CONCURRENCY
) -> int | None:
    """Check an in-flight cap (None = the default).

    Args:
        value: the cap.
        field: its name, for the error message.
        high: the largest cap allowed.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConfigurationError(f"{field} must be a whole number from 1 up to {high}")
    return value


def check_grace(value: float, field: str = "grace") -> float:
    """Check a secret rotation grace in seconds (0 drops the old secrets now).

    Args:
        value: seconds.
        field: its name, for the error message.
    """
    return check_number(value, field, low=0.0, high=MAX_SECRET_GRACE, unit=" s (30 days)")


def check_url_port(url: str) -> str:
    """Refuse a URL whose explicit port no socket accepts (0, 65536 and above).

    The SSRF guard checks the rest at registration; this is for request models, so the 422
    names the ``url`` field.

    Args:
        url: the endpoint URL.
    """
    import httpx

    try:
        port = httpx.URL(url).port
    except (httpx.InvalidURL, TypeError, ValueError):
        return url  # the guard reports what is wrong with it
    if port is not None and not 1 <= port <= 65535:
        raise ConfigurationError(f"the URL port must be between 1 and 65535 (got {port})")
    return url


# Request-model field types carrying the same bounds (pydantic reports the field's location).
URLField = Annotated[
    str, Field(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(check_url_port)
]
RateLimitField = Annotated[
    float,
    Field(
        ge=MIN_RATE_LIMIT,
        le=MAX_RATE_LIMIT,
        allow_inf_nan=False,
        description=f"deliveries per second, {MIN_RATE_LIMIT:g} to {MAX_RATE_LIMIT:g}",
    ),
]
ConcurrencyField = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
