"""Metrics as OpenTelemetry instruments (``POSWEB_METRICS = ["opentelemetry"]``).

Instruments of the meter ``flask_posweb`` of the host's global meter provider,
made once per process: the API's proxy hands them to the provider the host
sets, even later. Attributes follow the spans': ``posweb.event``,
``posweb.merchant``, ``posweb.status``, ``posweb.receiver``, and
``http.response.status_code``. The backlog is observable gauges read from the
store at each collection.

.. versionadded:: 0.3
"""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Iterable
from collections.abc import Mapping
from importlib.metadata import version

from opentelemetry import metrics

from . import backlog
from .instruments import BACKLOG
from .instruments import INSTRUMENTS
from .instruments import SECONDS

__all__ = ["OpenTelemetry"]

#: Each label's attribute name.
ATTRIBUTES = {
    "event": "posweb.event",
    "merchant": "posweb.merchant",
    "status": "posweb.status",
    "receiver": "posweb.receiver",
    "status_code": "http.response.status_code",
}

_made: dict[str, t.Any] = {}
_lock = threading.Lock()


def _instruments() -> dict[str, t.Any]:
    with _lock:
        if not _made:
            meter = metrics.get_meter("flask_posweb", version("flask-posweb"))
            for instrument in INSTRUMENTS:
                name = f"posweb.{instrument.name}"
                if instrument.kind == "counter":
                    _made[instrument.name] = meter.create_counter(
                        name, "{delivery}", instrument.description
                    )
                else:
                    _made[instrument.name] = meter.create_histogram(
                        name,
                        instrument.unit,
                        instrument.description,
                        explicit_bucket_boundaries_advisory=SECONDS,
                    )
            for gauge, description in BACKLOG.items():
                meter.create_observable_gauge(
                    f"posweb.backlog.{gauge}",
                    [_observer(gauge)],
                    "s" if gauge.endswith("_age") else "{delivery}",
                    description,
                )
    return _made


def _observer(gauge: str) -> t.Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
    def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [
            metrics.Observation(readings[gauge], {"posweb.inbox": name})
            for name, readings in backlog.read()
            if gauge in readings
        ]

    return observe


def _attributes(labels: Mapping[str, str]) -> dict[str, str | int]:
    found: dict[str, str | int] = {ATTRIBUTES[key]: value for key, value in labels.items()}
    if "status_code" in labels:  # an int, as the HTTP conventions have it
        found["http.response.status_code"] = int(labels["status_code"])
    return found


class OpenTelemetry:
    """The OpenTelemetry backend of :class:`~flask_posweb.metrics.Metrics`."""

    def __init__(self) -> None:
        self.instruments = _instruments()

    def add(self, name: str, labels: Mapping[str, str]) -> None:
        self.instruments[name].add(1, _attributes(labels))

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        self.instruments[name].record(value, _attributes(labels))
