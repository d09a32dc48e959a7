"""The statuses of a delivery and every transition between them: the one place.

The store (:mod:`.store`, whose SQL writes these tables as ``CASE``
expressions, see :func:`.statements.case`) and the dispatcher ask this module
where a delivery goes next; none of them decides it alone. :func:`mermaid` draws the table
below, so the diagram in the docs is this code, not a copy of it, and
``tests/test_states.py`` walks every transition through the public API.

In short: a delivery is stored ``pending`` (or refused, ``rejected``); a
dispatch ends it ``processed``, ``failed`` (retried with backoff), ``dead``
(no attempt left), ``unhandled`` (nobody subscribes) or ``rejected`` (no
longer valid). Only a replay moves a finished delivery; a repeat from DealPOS
retries a failed one. A waiting delivery that no live dispatcher can take (its
receivers were renamed or removed by a deploy) is ``stranded`` after a while,
and ``pending`` again when a dispatcher that has them is back, or when an
operator adopts it for the receivers deployed now (a replay with ``--adopt``).

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import typing as t
from collections.abc import Mapping

__all__ = [
    "DISPATCHABLE",
    "DISPATCH_OUTCOMES",
    "REPEAT",
    "REPLAY",
    "REVIVE",
    "STRAND",
    "STATUSES",
    "TERMINAL",
    "TRANSITIONS",
    "Status",
    "Transition",
    "after_dispatch",
    "mermaid",
]

Status = t.Literal[
    "pending", "failed", "stranded", "processed", "dead", "unhandled", "rejected"
]
STATUSES: tuple[Status, ...] = t.get_args(Status)

#: Statuses a dispatcher may take: due now or later, never finished.
DISPATCHABLE: tuple[Status, ...] = ("pending", "failed")
#: What a dispatcher does not take, and retention never deletes: a delivery
#: that has waited longer than ``POSWEB_STRANDED_AFTER`` for receivers that no
#: live dispatcher has (see :mod:`.liveness`).
STRAND: Mapping[Status, Status] = {"pending": "stranded", "failed": "stranded"}
#: A dispatcher that has a stranded delivery's receivers is live again (old code
#: back after a rollback, or its workers after an outage): it is due at once.
REVIVE: Mapping[Status, Status] = {"stranded": "pending"}

#: Statuses nothing moves on its own: only a replay does. Retention deletes these only.
TERMINAL: tuple[Status, ...] = ("processed", "dead", "unhandled", "rejected")

#: What an operator's replay does (``flask posweb replay``, the log page). Every
#: replay gives a fresh attempt budget; a processed or unhandled delivery runs
#: every receiver again (a new generation), a failed or dead one only those
#: that have not succeeded, a rejected one is validated again. A replay with
#: ``--adopt`` moves the same way, and the delivery expects the receivers of
#: the app that adopts it from then on: what a stranded delivery needs.
REPLAY: Mapping[Status, Status] = {
    "pending": "pending",
    "failed": "failed",
    "stranded": "pending",
    "processed": "pending",
    "dead": "failed",
    "unhandled": "pending",
    "rejected": "pending",
}

#: What a repeat does: DealPOS sent a body again within the duplicate window
#: (see :mod:`.duplicates`). It retries a delivery that failed, now; a dead one
#: gets a fresh attempt budget. A pending one is left to its dispatcher, or
#: taken at once when its lease ran out. Others (processed, unhandled) are done:
#: the repeat changes nothing, and rejected bodies never meet valid ones.
REPEAT: Mapping[Status, Status] = {
    "pending": "pending",
    "failed": "failed",
    "dead": "failed",
}


@dataclasses.dataclass(frozen=True)
class Transition:
    """One edge of the state machine."""

    #: ``None`` for a new row.
    source: Status | None
    target: Status
    #: What moves it: ``store``, ``refuse``, an outcome of a dispatch
    #: (:data:`DISPATCH_OUTCOMES`), ``strand``, ``revive``, ``replay`` or ``repeat``.
    trigger: str


#: What a dispatch can end in, by what happened.
DISPATCH_OUTCOMES: Mapping[str, Status] = {
    "every receiver ok": "processed",
    "a receiver failed": "failed",
    "failed, no attempt left": "dead",
    "no receiver subscribes": "unhandled",
    "no longer valid": "rejected",
}


def after_dispatch(*, receivers: int, failed: int, attempts: int, max_attempts: int) -> Status:
    """Where a dispatched delivery goes.

    :param receivers: receivers this dispatcher has for the event (0: unhandled).
    :param failed: how many of them failed in this attempt.
    :param attempts: attempts made, this one included.
    """
    if receivers == 0:
        return "unhandled"
    if not failed:
        return "processed"
    return "dead" if attempts >= max_attempts else "failed"


TRANSITIONS: tuple[Transition, ...] = (
    Transition(None, "pending", "store"),
    Transition(None, "rejected", "refuse"),
    *(
        Transition(source, target, trigger)
        for source in DISPATCHABLE
        for trigger, target in DISPATCH_OUTCOMES.items()
    ),
    *(Transition(source, target, "strand") for source, target in STRAND.items()),
    *(Transition(source, target, "revive") for source, target in REVIVE.items()),
    *(Transition(source, target, "replay") for source, target in REPLAY.items()),
    *(Transition(source, target, "repeat") for source, target in REPEAT.items()),
)


def mermaid() -> str:
    """The state diagram of :data:`TRANSITIONS`, as a Mermaid ``stateDiagram-v2``."""
    lines = ["stateDiagram-v2"]
    for edge in TRANSITIONS:
        source = "[*]" if edge.source is None else edge.source
        lines.append(f"    {source} --> {edge.target}: {edge.trigger}")
    return "\n".join(lines)
