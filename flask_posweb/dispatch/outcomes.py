"""The outcome of one dispatch, once recorded: one log record, one signal.

Every recorded outcome (processed, failed, unhandled, dead, rejected) gives
exactly one record on the logger ``flask_posweb.outcomes`` and one
:data:`~flask_posweb.signals.webhook_dispatched`, which the metrics count.
The record carries its fields as flat attributes (:data:`FIELDS`), which JSON
formatters such as python-json-logger ship as top-level keys and a plain
format string can name (``%(posweb_status)s``). Never a body, a header or a
receiver's traceback: those stay in the inbox.

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
import typing as t

from .. import signals
from .receivers import notify

if t.TYPE_CHECKING:
    from flask import Flask

    from ..inbox import Attempt
    from ..inbox import Status

__all__ = ["FIELDS", "LEVELS", "Outcome", "report"]

logger = logging.getLogger("flask_posweb.outcomes")

#: How loud each outcome is: a dead delivery waits for an operator.
LEVELS: dict[str, int] = {
    "processed": logging.INFO,
    "failed": logging.WARNING,
    "unhandled": logging.WARNING,
    "rejected": logging.WARNING,
    "dead": logging.ERROR,
}

#: The record's attributes, each ``posweb_`` and an :class:`Outcome` field.
FIELDS = ("delivery_id", "event", "merchant", "status", "attempts", "duration")


class Outcome(t.NamedTuple):
    """A dispatch's recorded outcome (the keyword ``outcome`` of
    :data:`~flask_posweb.signals.webhook_dispatched`).

    .. versionadded:: 0.3
    """

    delivery_id: int
    #: The event's canonical name (the catalogue's: bounded).
    event: str
    #: Who sent it (``None``: the app's own credentials).
    merchant: str | None
    status: Status
    #: Attempts so far, this one included.
    attempts: int
    #: Seconds this dispatch took, validation and receivers included.
    duration: float
    #: The receivers called this time (name, success, duration), in order.
    receivers: tuple[Attempt, ...] = ()


def report(app: Flask, outcome: Outcome, message: str = "", *args: object) -> None:
    """Log ``outcome``'s record and send its signal.

    :param message: the record's message (``%``-style, with ``args``); by
        default one naming the delivery, its status and duration.
    """
    if not message:
        message, args = "Delivery %s (%s) %s after %s attempt(s) in %.3f s", (
            outcome.delivery_id,
            outcome.event,
            outcome.status,
            outcome.attempts,
            outcome.duration,
        )
    level = LEVELS.get(outcome.status, logging.WARNING)
    if logger.isEnabledFor(level):
        extra = {f"posweb_{name}": getattr(outcome, name) for name in FIELDS}
        logger.log(level, message, *args, extra=extra)
    notify(signals.webhook_dispatched, app, outcome=outcome, merchant=outcome.merchant)
