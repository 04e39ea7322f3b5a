"""Parsers for the string shorthands used in configuration: sizes and durations, and the bounds
every duration and timestamp the library accepts must stay within (M7)."""

from __future__ import annotations

import math
import re

from extapi_kit.exceptions import ConfigurationError

__all__ = ["MAX_DURATION", "MAX_TIMESTAMP", "check_timestamp", "parse_duration", "parse_size"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

MAX_DURATION = 100 * 365.25 * 86400
"""The longest duration accepted anywhere (100 years, 3,155,760,000 s): a larger one is a typo or
an attack, and ``now + duration`` would leave the range dates can be shown in (M7)."""
MAX_TIMESTAMP = 253_402_300_799.0
"""The latest epoch timestamp accepted: 9999-12-31T23:59:59Z, the last second ``datetime`` and
ISO 8601 text can represent."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bounded(seconds: float, value: object) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"duration must be finite and non-negative: {_shown(value)}")
    if seconds > MAX_DURATION:
        raise ConfigurationError(f"duration is longer than 100 years: {_shown(value)}")
    return seconds


def parse_size(value: int | str) -> int:
    """Parse a byte size: an int, or a string like ``"512KiB"``, ``"10MB"`` or ``"2048"``.

    Decimal units (kB, MB, GB) are powers of 1000 and binary units (KiB, MiB, GiB) powers of 1024.

    Args:
        value: the size.

    Raises:
        ConfigurationError: when the value is negative, fractional bytes or not understood.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"invalid size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(f"size must not be negative: {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid size: {value!r}")
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfigurationError(f"invalid size: {value!r} (examples: '512KiB', '10MB', 2048)")
    amount = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if amount != int(amount):
        raise ConfigurationError(f"size is not a whole number of bytes: {value!r}")
    return int(amount)


def parse_duration(value: float | int | str) -> float:
    """Parse a duration in seconds: a number, or a string like ``"30d"``, ``"1h30m"``, ``"250ms"``.

    Args:
        value: the duration.

    Raises:
        ConfigurationError: when the value is negative, not finite (``"nan"``, ``"inf"``, digits
            past float range), longer than :data:`MAX_DURATION`, or not understood.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float range
            seconds = math.inf
        return _bounded(seconds, value)
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid duration: {_shown(value)}")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() also reads "nan" and "inf": a NaN TTL would silently disable expiry.
        return _bounded(seconds, value)
    pos = 0
    total = 0.0
    compact = text.replace(" ", "")
    for m in _DURATION_RE.finditer(compact):
        if m.start() != pos:
            break
        # float() of a long digit run is inf, not an error: _bounded() refuses it below.
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if pos != len(compact) or not compact:
        raise ConfigurationError(
            f"invalid duration: {_shown(value)} (examples: '30d', '1h30m', '250ms')"
        )
    return _bounded(total, value)


def check_timestamp(value: object, what: str = "timestamp") -> float:
    """Return ``value`` as epoch seconds, refusing anything outside 0 .. :data:`MAX_TIMESTAMP`.

    Args:
        value: epoch seconds (int or float).
        what: the name used in the error message.

    Raises:
        ConfigurationError: when the value is not a number, not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be epoch seconds: {_shown(value)}")
    try:
        ts = float(value)
    except OverflowError:
        ts = math.inf
    if not math.isfinite(ts) or not 0 <= ts <= MAX_TIMESTAMP:
        raise ConfigurationError(
            f"{what} must be epoch seconds from 0 to {MAX_TIMESTAMP:.0f} "
            f"(9999-12-31T23:59:59Z): {_shown(value)}"
        )
    return ts
