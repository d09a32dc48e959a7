"""Running receivers for stored deliveries, in whichever process dispatches them.

:func:`dispatch_delivery` is the one entry point for any task engine (Celery,
RQ, Dramatiq...): hand it a delivery id, it takes the delivery's lease, runs
the receivers in the app context and records the outcome. A duplicate call is
harmless: the second finds the lease held, or the delivery finished.

.. versionadded:: 0.2
"""

from __future__ import annotations

import typing as t

from ..inbox import Status
from .runner import new_owner

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["dispatch_delivery"]


def dispatch_delivery(app: Flask, delivery_id: int, *, owner: str | None = None) -> Status | None:
    """Dispatch one stored delivery of ``app`` now, wherever this runs.

    Safe to call more than once for one delivery, and from several processes
    at once: only the caller that takes the lease runs the receivers. A failed
    delivery is due again after its backoff; the relay (or a worker) brings it
    back, so a task engine need not retry by itself.

    :param owner: who holds the lease, for the inbox's records (default: a new
        id naming this host and process).
    :returns: the delivery's new status, or ``None`` when nothing was run
        (finished already, held by another dispatcher, not due in this app's
        inbox, or expecting receivers this app lacks).

    .. versionadded:: 0.2
    """
    from ..state import get_state

    dispatcher = get_state(app).require_dispatcher()
    with app.app_context():
        return dispatcher.dispatch(delivery_id, owner or new_owner("task"))
