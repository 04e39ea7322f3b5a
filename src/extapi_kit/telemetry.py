"""OpenTelemetry spans and metrics through ``opentelemetry-api`` only.

With no SDK configured every call here is a no-op proxy; configure an SDK in the host app and the
same instruments start recording. Instruments are created once and cached by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

__all__ = [
    "counter",
    "histogram",
    "meter",
    "observable_gauge",
    "span",
    "tracer",
    "tracing_enabled",
    "up_down_counter",
]

_INSTRUMENTATION = "extapi_kit"
_instruments: dict[str, Any] = {}
_tracing_on = False
_PROVIDER_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
Attributes = Mapping[str, AttributeValue]


def tracing_enabled() -> bool:
    """Return whether an SDK tracer provider is installed (spans would be recorded).

    With only ``opentelemetry-api`` (the global provider is still the default proxy or a no-op
    provider) this is False and :func:`span` costs one function call. Once a real provider is set
    it cannot be unset, so a True answer is cached.
    """
    global _tracing_on
    if _tracing_on:
        return True
    # Fast path: nothing set globally and no provider named in the environment (checked once at
    # import) means no SDK; skip get_tracer_provider()'s environment lookup on every request.
    if getattr(trace, "_TRACER_PROVIDER", None) is None and not _PROVIDER_FROM_ENV:
        return False
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    _tracing_on = True
    return True


class _NoSpan:
    """A reusable context manager standing in for a span when tracing is off."""

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> Any:
    """Return a context manager for a child span of the current one (near free when off).

    Use it for the stack's decisions (``extapi.auth``, ``extapi.ratelimit``, ...)::

        with telemetry.span("extapi.ratelimit", {"extapi.policy": name}) as sp:
            sp.set_attribute("extapi.remaining", remaining)

    The yielded object is always a ``Span`` (a non-recording one when no SDK is configured), so
    callers never need to check.

    Args:
        name: the span name.
        attributes: initial attributes.
        kind: the span kind.
    """
    if not tracing_enabled():
        return _NO_SPAN
    return tracer().start_as_current_span(name, kind=kind, attributes=attributes)


def observable_gauge(
    name: str,
    callback: Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]],
    description: str = "",
    unit: str = "1",
) -> metrics.ObservableGauge:
    """Return a cached observable gauge; ``callback`` is registered on first creation only.

    Args:
        name: instrument name.
        callback: called at each collection; yields observations.
        description: what it measures.
        unit: UCUM unit.
    """
    inst = _instruments.get(name)
    if inst is None:
        inst = meter().create_observable_gauge(
            name, callbacks=[callback], unit=unit, description=description
        )
        _instruments[name] = inst
    return inst


def tracer() -> trace.Tracer:
    """Return the library's tracer, from the global provider as it is at call time."""
    return trace.get_tracer(_INSTRUMENTATION)


def meter() -> metrics.Meter:
    """Return the library's meter (a proxy until an SDK is configured)."""
    return metrics.get_meter(_INSTRUMENTATION)


def counter(name: str, description: str = "", unit: str = "1") -> metrics.Counter:
    """Return a cached counter.

    Args:
        name: instrument name, e.g. ``"extapi.requests"``.
        description: what it counts.
        unit: UCUM unit.
    """
    inst = _instruments.get(name)
    if inst is None:
        inst = meter().create_counter(name, unit=unit, description=description)
        _instruments[name] = inst
    return inst


def up_down_counter(name: str, description: str = "", unit: str = "1") -> metrics.UpDownCounter:
    """Return a cached up-down counter.

    Args:
        name: instrument name.
        description: what it measures.
        unit: UCUM unit.
    """
    inst = _instruments.get(name)
    if inst is None:
        inst = meter().create_up_down_counter(name, unit=unit, description=description)
        _instruments[name] = inst
    return inst


def histogram(name: str, description: str = "", unit: str = "s") -> metrics.Histogram:
    """Return a cached histogram.

    Args:
        name: instrument name.
        description: what it measures.
        unit: UCUM unit.
    """
    inst = _instruments.get(name)
    if inst is None:
        inst = meter().create_histogram(name, unit=unit, description=description)
        _instruments[name] = inst
    return inst
