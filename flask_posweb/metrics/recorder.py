"""One app's metrics, fed by the library's own signals: nothing on the request
path calls a metric directly.

Each figure comes from the one signal that already says it happened:

============================  =======================================================
``deliveries.received``       :data:`flask.request_finished` of a webhook URL (every
                              answer, a bug's 500 included)
``deliveries.stored``         :data:`~flask_posweb.signals.webhook_received`
``deliveries.rejected``       :data:`~flask_posweb.signals.webhook_rejected`
``deliveries.duplicate``      :data:`~flask_posweb.signals.webhook_repeated`
``dispatch.*``, ``receiver.*``  :data:`~flask_posweb.signals.webhook_dispatched`
============================  =======================================================

The figures go to each :class:`Backend` the app has (``POSWEB_METRICS``), so
both backends count the same events the same way.

.. versionadded:: 0.3
"""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Callable
from collections.abc import Mapping

from flask import Flask
from flask import Response
from flask import g
from flask import request
from flask import request_finished

from .. import signals
from ..events import EVENTS
from ..exceptions import WebhookError
from . import backlog

if t.TYPE_CHECKING:
    from ..dispatch.outcomes import Outcome
    from ..events import WebhookEvent
    from ..inbox import Inbox

__all__ = ["Backend", "MerchantLabels", "Metrics"]

Labels = Mapping[str, str]

#: Where a request's proven merchant is kept in :data:`flask.g`
#: (:data:`flask_posweb.web.guard.SENDER`, a layer above this one).
SENDER = "posweb_merchant"


class Backend(t.Protocol):
    """Where figures go: OpenTelemetry instruments, Prometheus metrics."""

    def add(self, name: str, labels: Labels) -> None:
        """Count one for the counter ``name`` (of :data:`.INSTRUMENTS`)."""

    def observe(self, name: str, value: float, labels: Labels) -> None:
        """Record ``value`` in the histogram ``name``."""


class MerchantLabels:
    """The merchant label's values, bounded: the first ``cap`` merchants seen by
    this process each get their own, the others share ``"other"``; the app's own
    credentials are ``""`` (Prometheus: no label). With ``cap`` 0, every value is
    ``None``: no merchant label at all.

    Only a merchant whose credentials were proven takes a place: a refused
    request's claim (any string in a URL) is counted as one seen before, or as
    ``"other"``, so that nobody can fill the places by guessing.
    """

    OTHER = "other"

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, merchant: str | None, *, proven: bool = True) -> str | None:
        if not self.cap:
            return None
        if merchant is None:
            return ""
        if merchant in self._seen:
            return merchant
        if not proven:
            return self.OTHER
        with self._lock:
            if len(self._seen) < self.cap:
                self._seen.add(merchant)
                return merchant
        return self.OTHER


class Metrics:
    """The metrics of one app: subscribes to its signals, and sends each figure
    to every backend.

    :param mounts: the names the blueprint is registered under (read per
        request: a request to another blueprint's URL is not a delivery).
    """

    def __init__(
        self,
        app: Flask,
        backends: list[Backend],
        *,
        merchants: int,
        mounts: Callable[[], list[str]],
    ) -> None:
        self.app = app
        self.backends = backends
        self.merchant = MerchantLabels(merchants)
        self._mounts = mounts
        self._inbox: Inbox | None = None
        # Held strongly and scoped to the app, as the library's receivers are.
        request_finished.connect(self._answered, sender=app, weak=False)
        signals.webhook_received.connect(self._stored, sender=app, weak=False)
        signals.webhook_rejected.connect(self._rejected, sender=app, weak=False)
        signals.webhook_repeated.connect(self._repeated, sender=app, weak=False)
        signals.webhook_dispatched.connect(self._dispatched, sender=app, weak=False)

    def watch(self, inbox: Inbox) -> None:
        """Report ``inbox``'s backlog as gauges, read when metrics are collected."""
        self._inbox = inbox
        backlog.watch(inbox)

    def close(self) -> None:
        """Stop reporting the backlog (the inbox is closing)."""
        if self._inbox is not None:
            backlog.unwatch(self._inbox)

    def _labels(
        self, event: str, merchant: str | None, *, proven: bool = True, **more: str
    ) -> dict[str, str]:
        labels = {"event": event, **more}
        label = self.merchant(merchant, proven=proven)
        if label is not None:
            labels["merchant"] = label
        return labels

    def _add(self, name: str, labels: Labels) -> None:
        for backend in self.backends:
            backend.add(name, labels)

    def _observe(self, name: str, value: float, labels: Labels) -> None:
        for backend in self.backends:
            backend.observe(name, value, labels)

    # -- the signals ---------------------------------------------------------------

    def _answered(self, sender: Flask, response: Response, **extra: t.Any) -> None:
        mount, _, endpoint = (request.endpoint or "").rpartition(".")
        if endpoint in EVENTS and mount in self._mounts():
            merchant, proven = _merchant()
            code = str(response.status_code)
            labels = self._labels(endpoint, merchant, proven=proven, status_code=code)
            self._add("deliveries.received", labels)

    def _stored(self, sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
        if event.id is not None:  # without an inbox, nothing is stored
            self._add("deliveries.stored", self._labels(event.name, event.merchant))

    def _rejected(
        self, sender: Flask, event_name: str | None, error: WebhookError, **extra: t.Any
    ) -> None:
        # Not the token URL's, the loyalty calls' or a stray URL's refusals.
        if event_name is not None and event_name in EVENTS:
            merchant, proven = _merchant()
            code = str(error.status_code)
            labels = self._labels(event_name, merchant, proven=proven, status_code=code)
            self._add("deliveries.rejected", labels)

    def _repeated(self, sender: Flask, event_name: str, **extra: t.Any) -> None:
        self._add("deliveries.duplicate", self._labels(event_name, extra.get("merchant")))

    def _dispatched(self, sender: Flask, outcome: Outcome, **extra: t.Any) -> None:
        event, status = outcome.event, outcome.status
        self._add("dispatch.outcomes", self._labels(event, outcome.merchant, status=status))
        self._observe("dispatch.duration", outcome.duration, {"event": event, "status": status})
        for attempt in outcome.receivers:
            labels = {"event": event, "receiver": attempt.receiver}
            self._observe("receiver.duration", attempt.duration_ms / 1000, labels)


def _merchant() -> tuple[str | None, bool]:
    """The current request's merchant, and whether its credentials proved it
    (otherwise it is only what the URL claims)."""
    if SENDER in g:
        return g.get(SENDER), True
    return (request.view_args or {}).get("merchant"), False
