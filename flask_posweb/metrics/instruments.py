"""The metrics, declared once: every backend builds its instruments from :data:`INSTRUMENTS`.

Names are given without a prefix or unit suffix; each backend spells them its
own way (``posweb.deliveries.received`` in OpenTelemetry,
``posweb_deliveries_received_total`` in Prometheus). Labels are bounded: the
event is one of the catalogue's, a receiver's name comes from code, a status
code or outcome from a short list, and the merchant is capped
(``POSWEB_METRICS_MERCHANTS``). Never a delivery id.

.. versionadded:: 0.3
"""

from __future__ import annotations

import datetime as dt
import typing as t

from ..inbox.records import Backlog

__all__ = ["BACKLOG", "INSTRUMENTS", "Instrument", "backlog_readings"]


class Instrument(t.NamedTuple):
    """One counter or histogram."""

    kind: t.Literal["counter", "histogram"]
    #: Without prefix or unit: ``deliveries.received``.
    name: str
    #: ``s`` for seconds; ``""`` for a count.
    unit: str
    labels: tuple[str, ...]
    description: str


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "counter",
        "deliveries.received",
        "",
        ("event", "status_code", "merchant"),
        "Webhook requests answered, by event and HTTP status code (200: stored or repeated).",
    ),
    Instrument(
        "counter",
        "deliveries.stored",
        "",
        ("event", "merchant"),
        "Deliveries stored in the inbox (new ones: repeats and refusals not included).",
    ),
    Instrument(
        "counter",
        "deliveries.rejected",
        "",
        ("event", "status_code", "merchant"),
        "Webhook requests refused, by event and HTTP status code.",
    ),
    Instrument(
        "counter",
        "deliveries.duplicate",
        "",
        ("event", "merchant"),
        "Deliveries that repeated one stored already, answered 200 and not stored again.",
    ),
    Instrument(
        "counter",
        "dispatch.outcomes",
        "",
        ("event", "status", "merchant"),
        "Recorded outcomes of dispatches, by event and status "
        "(processed, failed, unhandled, dead, rejected).",
    ),
    Instrument(
        "histogram",
        "dispatch.duration",
        "s",
        ("event", "status"),
        "Seconds one dispatch took, validation and every receiver included.",
    ),
    Instrument(
        "histogram",
        "receiver.duration",
        "s",
        ("event", "receiver"),
        "Seconds one receiver call took.",
    ),
)

#: The backlog's gauges, one per :class:`~flask_posweb.inbox.Backlog` field: a
#: count as it is, a time as its age in seconds (``<field>_age``). Read from the
#: store when metrics are collected, never kept per process.
BACKLOG: dict[str, str] = {
    "waiting": "Deliveries waiting: pending or failed (due, being dispatched, or "
    "waiting for a retry).",
    "due": "Of the waiting deliveries, those due now or being dispatched.",
    "oldest_due_age": "Seconds the delivery due longest has been due: how far dispatch lags.",
    "dead": "Dead deliveries: every attempt failed; they wait for an operator's replay.",
}


def backlog_readings(backlog: Backlog, now: dt.datetime) -> dict[str, float]:
    """The gauges' values, derived from the backlog's fields: numbers as they
    are, times (naive UTC) as their age at ``now`` (0 when ``None``). A field
    added to :class:`~flask_posweb.inbox.Backlog` becomes a gauge by itself."""
    readings: dict[str, float] = {}
    for name, value in backlog._asdict().items():
        if name in _TIMES:
            age = 0.0 if value is None else (now - value).total_seconds()
            readings[f"{name}_age"] = max(0.0, age)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            readings[name] = float(value)
    return readings


#: Backlog fields that hold a time (their hints name ``datetime``).
_TIMES = frozenset(
    name for name, hint in Backlog.__annotations__.items() if "datetime" in str(hint)
)


#: Histogram boundaries, in seconds, for both backends: most receivers call a
#: service and take milliseconds to seconds (OpenTelemetry's default
#: boundaries are for milliseconds).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
