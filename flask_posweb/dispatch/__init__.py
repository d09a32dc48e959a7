"""Running receivers for stored deliveries, in whichever process dispatches them.

:func:`dispatch_delivery` is the one entry point for any task engine (Celery,
RQ, Dramatiq...): hand it a delivery id, it takes the delivery's lease, runs
the receivers in the app context and records the outcome. A duplicate call is
harmless: the second finds the lease held, or the delivery finished.

.. versionadded:: 0.2
"""

from __future__ import annotations

import collections
import typing as t
from collections.abc import Callable
from collections.abc import Sequence

from ..inbox import Filter
from ..inbox import Status
from .runner import new_owner

if t.TYPE_CHECKING:
    from flask import Flask

    from ..state import PosWebState

__all__ = ["dispatch_delivery", "replay"]


def dispatch_delivery(app: Flask, delivery_id: int, *, owner: str | None = None) -> Status | None:
    """Dispatch one stored delivery of ``app`` now, wherever this runs.

    Safe to call more than once for one delivery, and from several processes
    at once: only the caller that takes the lease runs the receivers. A
    pending or failed delivery is taken whether or not it is due: a failed one
    runs at once, before its backoff has passed. So a task engine should not
    retry by itself: a failed delivery is due again after its backoff, and the
    relay (or a worker) brings it back.

    :param owner: who holds the lease, for the inbox's records (default: a new
        id naming this host and process).
    :returns: the delivery's new status, or ``None`` when nothing was run
        (finished already, held by another dispatcher, not in this app's
        inbox, or expecting receivers this app lacks).

    .. versionadded:: 0.2
    """
    from ..state import get_state

    dispatcher = get_state(app).require_dispatcher()
    with app.app_context():
        return dispatcher.dispatch(delivery_id, owner or new_owner("task"))


def replay(
    state: PosWebState,
    delivery_ids: Sequence[int],
    *,
    on_each: Callable[[], None] | None = None,
) -> collections.Counter[str]:
    """Replay deliveries here and now (``flask posweb replay``, the log page):
    each is made due again (:data:`~flask_posweb.inbox.states.REPLAY`), then
    taken and dispatched in this process, in the app context.

    :param on_each: called after each delivery (a progress bar).
    :returns: how many ended in each status; ``busy`` for those another
        dispatcher held, or whose receivers this app lacks.

    .. versionadded:: 0.2
    """
    inbox, dispatcher = state.require_inbox(), state.require_dispatcher()
    owner, tally = new_owner("replay"), collections.Counter[str]()
    for start in range(0, len(delivery_ids), 500):
        chunk = list(delivery_ids[start : start + 500])
        inbox.replay(Filter(ids=chunk))
        for delivery_id in chunk:
            with state.app.app_context():
                status = dispatcher.dispatch(delivery_id, owner)
            tally[status or "busy"] += 1
            if on_each is not None:
                on_each()
    return tally
