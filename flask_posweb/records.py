"""What the inbox keeps: deliveries and receivers' attempts, as plain values.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import typing as t

__all__ = [
    "DISPATCHABLE",
    "STATUSES",
    "Admission",
    "Attempt",
    "Delivery",
    "Status",
    "dedup_key",
    "utcnow",
]

Status = t.Literal["pending", "failed", "processed", "dead", "rejected"]
STATUSES: tuple[Status, ...] = t.get_args(Status)
#: Statuses a dispatcher may take.
DISPATCHABLE: tuple[Status, ...] = ("pending", "failed")


def utcnow() -> dt.datetime:
    """Now, as the naive UTC datetime the inbox stores."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One stored delivery (a row of ``posweb_deliveries``)."""

    id: int
    event: str
    dedup_key: str
    status: Status
    raw: bytes
    headers: dict[str, str]
    errors: dict[str, t.Any] | None
    answer: t.Any
    #: Every receiver call so far, as stored (see :meth:`Inbox.attempts_of`).
    outcomes: list[dict[str, t.Any]]
    attempts: int
    generation: int
    replay: bool
    received_at: dt.datetime
    updated_at: dt.datetime
    next_attempt_at: dt.datetime | None
    locked_by: str | None
    locked_until: dt.datetime | None


class Attempt(t.NamedTuple):
    """One call of one receiver for one delivery (a tuple: made on the hot path)."""

    receiver: str
    attempt: int
    generation: int
    ok: bool
    error: str | None
    started_at: dt.datetime
    duration_ms: float

    def stored(self) -> dict[str, t.Any]:
        """As kept in the delivery's ``outcomes`` (JSON)."""
        return {**self._asdict(), "started_at": self.started_at.isoformat()}

    @classmethod
    def from_stored(cls, stored: dict[str, t.Any]) -> Attempt:
        return cls(**{**stored, "started_at": dt.datetime.fromisoformat(stored["started_at"])})


@dataclasses.dataclass(frozen=True)
class Admission:
    """The result of :meth:`Inbox.admit`: the stored delivery, and whether it is new."""

    delivery: Delivery
    new: bool


def dedup_key(event: str, raw: bytes) -> str:
    """The duplicate key of a delivery: DealPOS sends no id, so name + body hash."""
    return f"{event}:{hashlib.sha256(raw).hexdigest()}"
