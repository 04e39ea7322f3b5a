"""Parsers for the string shorthands used in configuration: sizes and durations."""

from __future__ import annotations

import math
import re

from extapi_kit.exceptions import ConfigurationError

__all__ = ["parse_duration", "parse_size"]

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
        ConfigurationError: when the value is negative or not understood.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"duration must be finite and non-negative: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid duration: {value!r}")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() also reads "nan" and "inf": a NaN TTL would silently disable expiry.
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigurationError(f"duration must be finite and non-negative: {value!r}")
        return seconds
    pos = 0
    total = 0.0
    compact = text.replace(" ", "")
    for m in _DURATION_RE.finditer(compact):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if pos != len(compact) or not compact:
        raise ConfigurationError(f"invalid duration: {value!r} (examples: '30d', '1h30m', '250ms')")
    return total
