"""Metrics for Prometheus (``POSWEB_METRICS = ["prometheus"]``), and their exposition.

Counters and histograms live in prometheus_client's default registry, made
once per process, so a host's own ``make_wsgi_app()`` shows them too. Under
gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client writes
them to files that :class:`~prometheus_client.multiprocess.MultiProcessCollector`
adds up across workers. The backlog is not such a metric: it is read from the
store at each scrape (:class:`BacklogCollector`), so whichever worker answers
gives the whole figure and nothing is summed; it needs no ``multiprocess_mode``.

.. versionadded:: 0.3
"""

from __future__ import annotations

import os
import threading
import typing as t
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping

import prometheus_client
from flask import Response
from flask import request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.registry import CollectorRegistry

from . import backlog
from .instruments import BACKLOG
from .instruments import INSTRUMENTS
from .instruments import SECONDS

if t.TYPE_CHECKING:
    from ..inbox import Inbox

__all__ = ["BacklogCollector", "Prometheus", "exposition"]

_made: dict[str, t.Any] = {}
_lock = threading.Lock()


def _metrics() -> dict[str, t.Any]:
    with _lock:
        if not _made:
            for instrument in INSTRUMENTS:
                name = "posweb_" + instrument.name.replace(".", "_")
                if instrument.kind == "counter":
                    metric: t.Any = prometheus_client.Counter(
                        name, instrument.description, instrument.labels
                    )
                else:
                    metric = prometheus_client.Histogram(
                        name,
                        instrument.description,
                        instrument.labels,
                        unit="seconds",
                        buckets=SECONDS,
                    )
                _made[instrument.name] = metric
            if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
                # Multiprocess mode reads files only: the exposition adds the backlog.
                prometheus_client.REGISTRY.register(BacklogCollector())
    return _made


class Prometheus:
    """The Prometheus backend of :class:`~flask_posweb.metrics.Metrics`."""

    def __init__(self) -> None:
        self.metrics = _metrics()

    def _child(self, name: str, labels: Mapping[str, str]) -> t.Any:
        metric = self.metrics[name]
        # Every label is declared: one this app does not use (the merchant) is empty.
        return metric.labels(*(labels.get(label, "") for label in metric._labelnames))

    def add(self, name: str, labels: Mapping[str, str]) -> None:
        self._child(name, labels).inc()

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        self._child(name, labels).observe(value)


class BacklogCollector(Collector):
    """The backlog gauges (``posweb_backlog_*``, label ``inbox``), read from the
    store at each collection.

    :param inboxes: the inboxes to read; default: those of every app in this
        process with ``"prometheus"`` in ``POSWEB_METRICS``.
    """

    def __init__(self, inboxes: Iterable[Inbox] | None = None) -> None:
        self.inboxes = None if inboxes is None else list(inboxes)

    def describe(self) -> list[Metric]:
        # Nothing to check at registration: reading the store then would be a surprise.
        return []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, readings in backlog.read(self.inboxes):
            for gauge, value in readings.items():
                if gauge not in families:
                    seconds = gauge.endswith("_age")
                    families[gauge] = GaugeMetricFamily(
                        f"posweb_backlog_{gauge}{'_seconds' if seconds else ''}",
                        BACKLOG.get(gauge, f"The backlog's {gauge}."),
                        labels=["inbox"],
                        unit="seconds" if seconds else "",
                    )
                families[gauge].add_metric([name], value)
        yield from families.values()


def exposition(inbox: Inbox | None = None) -> Response:
    """This process's metrics in the scraper's format (Prometheus text or
    OpenMetrics, by its ``Accept``), with ``inbox``'s backlog read now.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): every worker's counters
    and histograms, added up from their files.
    """
    registry = CollectorRegistry(auto_describe=False)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if inbox is not None:
            registry.register(BacklogCollector([inbox]))
    else:
        registry.register(_Everything())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type)


class _Everything(Collector):
    """The default registry's metrics (the host's own too, as ``make_wsgi_app`` shows them)."""

    def collect(self) -> Iterator[Metric]:
        yield from prometheus_client.REGISTRY.collect()
