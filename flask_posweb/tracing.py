"""Spans through OpenTelemetry, when the host has it: one facade, free without it.

The library is an *instrumented library* in OpenTelemetry's terms: it uses the
API only (``opentelemetry-api``, the ``otel`` extra) and the host sets up the
SDK, its exporters and sampling, as it does for everything else. Without the
API installed nothing is imported, and without a tracer provider set (the
API's proxy, or its no-op) :func:`span` returns one shared object that does
nothing: the request path pays a call and an ``isinstance`` per span.

Spans follow the messaging conventions (a delivery is a message, its event
the destination): :data:`SYSTEM`, ``messaging.operation.type``,
``messaging.destination.name``, ``messaging.message.id``; and carry
``posweb.delivery.id``, ``posweb.event`` and ``posweb.merchant`` by the names
of :mod:`flask_posweb` itself. See :doc:`/telemetry`.

.. versionadded:: 0.3
"""

from __future__ import annotations

import os
import typing as t
from collections.abc import Mapping
from importlib.metadata import version

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: every span is the no-op
    trace = None  # type: ignore[assignment]

__all__ = ["NOOP", "SYSTEM", "Span", "active", "in_span", "messaging", "span"]

#: ``messaging.system`` of every span: the system the messages come from.
SYSTEM = "dealpos"

#: What an attribute may hold (OpenTelemetry's primitive types; ``None`` is left out).
Value = t.Union[str, bool, int, float, None]  # noqa: UP007 (a runtime alias on 3.10)

Kind = t.Literal["internal", "server", "consumer"]


class Span:
    """The no-op span: what :func:`span` returns when nobody records."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def set(self, key: str, value: Value) -> None:
        """Set an attribute (``None``: left unset)."""

    @property
    def recording(self) -> bool:
        """Whether anything is recorded: compute costly attributes only then."""
        return False


#: The one no-op span.
NOOP = Span()


class _Recording(Span):
    """A span of the host's tracer provider, made current while it is open."""

    __slots__ = ("_opened", "_server", "span")

    def __init__(
        self, tracer: t.Any, name: str, kind: Kind, attributes: Mapping[str, Value]
    ) -> None:
        self._server = kind == "server"
        self._opened = tracer.start_as_current_span(
            name,
            kind=_KINDS[kind],
            attributes={key: value for key, value in attributes.items() if value is not None},
        )
        self.span: t.Any = None

    def __enter__(self) -> Span:
        self.span = self._opened.__enter__()
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        error = exc_info[1]
        if error is not None:
            # A low-cardinality name for what went wrong, as the conventions ask.
            self.span.set_attribute("error.type", type(error).__qualname__)
            code = getattr(error, "code", None)
            if self._server and isinstance(code, int):
                self.span.set_attribute("http.response.status_code", code)
        self._opened.__exit__(*exc_info)

    def set(self, key: str, value: Value) -> None:
        if value is not None:
            self.span.set_attribute(key, value)

    @property
    def recording(self) -> bool:
        return bool(self.span is not None and self.span.is_recording())


if trace is not None:
    _KINDS = {
        "internal": trace.SpanKind.INTERNAL,
        "server": trace.SpanKind.SERVER,
        "consumer": trace.SpanKind.CONSUMER,
    }
    #: Providers that record nothing: the API's until the host sets one, and its no-op.
    _SILENT = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_tracer: tuple[object, t.Any] = (None, None)
#: The API makes a provider from the environment on first use when this names one.
_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()


def _current_tracer() -> t.Any:
    """This library's tracer of the provider set now (``None``: nobody records)."""
    global _tracer
    if trace is None:
        return None
    # The API's get_tracer_provider() reads the environment at each call (some
    # 2 µs, five times a request): while no provider is set, its global says so.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _FROM_ENVIRONMENT:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, _SILENT):
        return None
    if _tracer[0] is not provider:  # set (or replaced) since the last span
        _tracer = (provider, provider.get_tracer("flask_posweb", version("flask-posweb")))
    return _tracer[1]


def span(name: str, attributes: Mapping[str, Value] | None = None, kind: Kind = "internal") -> Span:
    """A span around a ``with`` block, child of the current one; the no-op
    :class:`Span` when OpenTelemetry is absent or records nothing.

    An exception leaving the block marks the span failed and sets
    ``error.type`` (and, on a ``server`` span, ``http.response.status_code``
    from the exception's ``code``).

    :param attributes: set when it starts (``None`` values left out).
    """
    tracer = _current_tracer()
    if tracer is None:
        return NOOP
    return _Recording(tracer, name, kind, attributes or {})


def active() -> bool:
    """Whether spans are recorded now (a tracer provider is set): compute what
    only a span needs after asking this."""
    return _current_tracer() is not None


def in_span() -> bool:
    """Whether a span is current (the host's HTTP server span, say): then a
    span of ours is its child, and leaves HTTP to it."""
    if trace is None:
        return False
    return bool(trace.get_current_span().get_span_context().is_valid)


def messaging(
    operation: t.Literal["receive", "process"],
    event: str,
    delivery_id: int | None = None,
    merchant: str | None = None,
) -> dict[str, Value]:
    """The attributes of a span about one delivery: the messaging conventions'
    and this library's own (``posweb.*``), the same values under both."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": event,
        "messaging.message.id": None if delivery_id is None else str(delivery_id),
        "posweb.event": event,
        "posweb.delivery.id": delivery_id,
        "posweb.merchant": merchant,
    }
