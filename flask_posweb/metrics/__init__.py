"""Metrics of deliveries and dispatch, for OpenTelemetry and Prometheus (``POSWEB_METRICS``).

One app's :class:`Metrics` subscribes to the library's signals and sends each
figure to its backends; :data:`~.instruments.INSTRUMENTS` declares them all.
See :doc:`/telemetry`.

.. versionadded:: 0.3
"""

from __future__ import annotations

from .instruments import BACKLOG
from .instruments import INSTRUMENTS
from .instruments import Instrument
from .recorder import Backend
from .recorder import MerchantLabels
from .recorder import Metrics

__all__ = [
    "BACKLOG",
    "INSTRUMENTS",
    "Backend",
    "Instrument",
    "MerchantLabels",
    "Metrics",
    "backend",
]


def backend(name: str) -> Backend:
    """The backend called ``name`` in ``POSWEB_METRICS``; its package is
    imported only now (settings checked it is installed)."""
    if name == "prometheus":
        from .prometheus import Prometheus

        return Prometheus()
    from .otel import OpenTelemetry

    return OpenTelemetry()
