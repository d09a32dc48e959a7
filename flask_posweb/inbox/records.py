"""What the inbox keeps: deliveries and receivers' attempts, as plain values.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import typing as t

from .states import Status

__all__ = [
    "MAX_ID",
    "Admission",
    "Attempt",
    "Backlog",
    "Delivery",
    "MerchantSummary",
    "ReceiverSet",
    "Retention",
    "Stranding",
    "utcnow",
]

#: The largest id a stored row can have: a signed 64-bit integer in both databases.
#: Ids from URLs, forms and the command line are checked against it first.
MAX_ID = 2**63 - 1


def utcnow() -> dt.datetime:
    """Now, as the naive UTC datetime the inbox stores."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One stored delivery (a row of ``posweb_deliveries``). Times are naive UTC.

    .. versionadded:: 0.1
    """

    id: int
    #: ``POSWEB_INBOX_NAME`` of the app that received it.
    inbox: str
    #: The merchant that sent it (``None``: the app's own credentials).
    #:
    #: .. versionadded:: 0.3
    merchant: str | None
    event: str
    status: Status
    #: The exact bytes received.
    raw: bytes
    #: Request headers, credentials removed.
    headers: dict[str, str]
    #: Why it was rejected: ``{field path: [messages]}``.
    errors: dict[str, t.Any] | None
    #: Fields the documentation marks required that the body lacked.
    missing: list[str] | None
    #: Key of the receivers expected to handle it (see ``posweb_receiver_sets``).
    receiver_set: str | None
    #: Every receiver call so far, as stored (see :meth:`Inbox.attempts`).
    outcomes: list[dict[str, t.Any]]
    attempts: int
    generation: int
    replay: bool
    received_at: dt.datetime
    updated_at: dt.datetime
    next_attempt_at: dt.datetime | None
    locked_by: str | None
    locked_until: dt.datetime | None
    enqueued_at: dt.datetime | None

    def __post_init__(self) -> None:
        # Stored as "" (a key part that NULL could not be): None to everyone else.
        if self.merchant == "":
            object.__setattr__(self, "merchant", None)

    @property
    def succeeded(self) -> frozenset[str]:
        """Receivers that already succeeded in the current generation."""
        return frozenset(
            o["receiver"] for o in self.outcomes if o["ok"] and o["generation"] == self.generation
        )

    @property
    def failed_receivers(self) -> list[str]:
        """Receivers whose latest attempt in the current generation failed."""
        latest: dict[str, bool] = {}
        for o in self.outcomes:
            if o["generation"] == self.generation:
                latest[o["receiver"]] = o["ok"]
        return [name for name, ok in latest.items() if not ok]


class Attempt(t.NamedTuple):
    """One call of one receiver for one delivery.

    .. versionadded:: 0.1
    """

    receiver: str
    attempt: int
    generation: int
    ok: bool
    #: The traceback, when it raised.
    error: str | None
    started_at: dt.datetime
    duration_ms: float
    #: Run after an operator's replay, which started the attempt count again
    #: (the delivery's :attr:`~Delivery.replay`).
    #:
    #: .. versionadded:: 0.2
    replay: bool = False

    def stored(self) -> dict[str, t.Any]:
        """As kept in the delivery's ``outcomes`` (JSON)."""
        return {**self._asdict(), "started_at": self.started_at.isoformat()}

    @classmethod
    def from_stored(cls, stored: dict[str, t.Any]) -> Attempt:
        return cls(
            **{
                # Kept before 0.2 named it: a later generation only comes from a replay.
                "replay": stored["generation"] > 0,
                **stored,
                "started_at": dt.datetime.fromisoformat(stored["started_at"]),
            }
        )


@dataclasses.dataclass(frozen=True)
class Admission:
    """The result of :meth:`Inbox.admit`: the stored delivery, and whether it is new
    (``False``: a duplicate of ``delivery``)."""

    delivery: Delivery
    new: bool


@dataclasses.dataclass(frozen=True)
class ReceiverSet:
    """The receivers an app has for one event, by name (see :mod:`flask_posweb.dispatch.receivers`).

    A delivery records the set of the app that received it, and only a
    dispatcher that has every one of them may take it.
    """

    event: str
    names: frozenset[str]

    @property
    def key(self) -> str:
        """A fixed-length key for the set: the same in every process."""
        text = "\n".join([self.event, *sorted(self.names)])
        return hashlib.sha256(text.encode()).hexdigest()


class Retention(t.NamedTuple):
    """How long finished deliveries are kept, in seconds (see the ``POSWEB_*`` keys).

    .. versionadded:: 0.2
    """

    processed: float
    dead: float
    rejected: float
    rejected_max_count: int
    #: Remembered loyalty answers (``POSWEB_LOYALTY_RETENTION``).
    #:
    #: .. versionadded:: 0.3
    answers: float = 90 * 86400


class Backlog(t.NamedTuple):
    """What waits in an inbox, for probes and metrics (see :meth:`~flask_posweb.Inbox.backlog`).

    .. versionadded:: 0.3
    """

    #: Pending or failed deliveries: due now, being dispatched, or waiting for a retry.
    waiting: int
    #: Of those, the ones due now (or being dispatched).
    due: int
    #: Since when the delivery due longest has been due (naive UTC); ``None``:
    #: nothing is due. Its age is how far dispatch lags behind.
    oldest_due: dt.datetime | None
    #: Dead deliveries (every attempt failed): they wait for an operator's replay.
    dead: int
    #: Stranded deliveries: they wait for receivers no live dispatcher has (adopt them).
    stranded: int

    def lag(self, now: dt.datetime) -> float:
        """Seconds the delivery due longest has waited since it became due (0: none)."""
        return 0.0 if self.oldest_due is None else max(0.0, (now - self.oldest_due).total_seconds())


class Stranding(t.NamedTuple):
    """What one pass of :meth:`~flask_posweb.Inbox.strand` did.

    .. versionadded:: 0.3
    """

    #: The deliveries it marked stranded (their rows as they are now).
    stranded: list[Delivery]
    #: How many stranded deliveries it made pending again.
    revived: int


class MerchantSummary(t.NamedTuple):
    """One merchant's deliveries, as :meth:`~flask_posweb.Inbox.merchants` counts them.

    .. versionadded:: 0.3
    """

    #: ``None``: the app's own credentials.
    merchant: str | None
    #: Deliveries per status, every status included.
    counts: dict[Status, int]
    #: When its oldest pending or failed delivery arrived (naive UTC); ``None``: none waits.
    oldest_waiting: dt.datetime | None = None
