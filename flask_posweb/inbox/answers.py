"""Remembered loyalty answers: an order is rewarded once.

DealPOS retries a call it got no answer to (a 5xx, or nothing within 30 s),
so "Loyalty Point On Order Complete" must not credit points twice. Its answer
is kept per order (its ``ID``, else the body's hash) in a table of its own,
``posweb_loyalty_answers``: never listed, counted, replayed or pruned with the
deliveries, kept for ``POSWEB_LOYALTY_RETENTION``. Nothing but a new answer to
a failed call changes a remembered one.

A call is *answering* while its provider runs (leased to it, for longer than
DealPOS waits before retrying), then *answered* or *failed* (asked again).

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from .database import Database
from .database import bound
from .tables import loyalty_answers

__all__ = ["AnswerStatus", "Answers", "Remembered"]

L = loyalty_answers.c
AnswerStatus = t.Literal["answering", "answered", "failed"]


@dataclasses.dataclass(frozen=True)
class Remembered:
    """One remembered call."""

    id: int
    #: Whose call it was (``None``: the app's own).
    merchant: str | None
    call: str
    key: str
    status: AnswerStatus
    answer: dict[str, t.Any] | None
    errors: dict[str, t.Any] | None
    locked_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Answers:
    """Remembered answers, in the inbox's database (and through its writer).

    .. versionadded:: 0.3
        (0.2 called it ``LoyaltyMemory``, in ``flask_posweb.loyalty.memory``.)
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        clock, now = database.clock, database.clock.now()
        dialect = database.engines.dialect
        insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(
            loyalty_answers
        )
        statement = insert.values(
            inbox=bound("inbox"),
            merchant=bound("merchant"),
            call=bound("call"),
            key=bound("key"),
            status="answering",
            raw=bound("raw"),
            headers=bound("headers", type_=L.headers.type),
            created_at=now,
            updated_at=now,
            locked_by=bound("owner"),
            locked_until=clock.plus("b_lease"),
        )
        # A failed call, or one whose provider's lease ran out, is taken over;
        # an answered one, or one being answered, is left as it is.
        self._take = statement.on_conflict_do_update(
            index_elements=[L.inbox, L.merchant, L.call, L.key],
            set_={
                "status": "answering",
                "locked_by": statement.excluded.locked_by,
                "locked_until": statement.excluded.locked_until,
                "updated_at": statement.excluded.updated_at,
            },
            where=sa.or_(
                L.status == "failed", sa.and_(L.status == "answering", L.locked_until < now)
            ),
        ).returning(L.id)
        self._settle = (
            loyalty_answers.update()
            .where(L.id == bound("id"), L.locked_by == bound("owner"))
            .values(
                status=bound("status"),
                answer=bound("answer", type_=L.answer.type),
                errors=bound("errors", type_=L.errors.type),
                locked_by=None,
                locked_until=None,
                updated_at=now,
            )
        )

    def take(
        self,
        merchant: str | None,
        call: str,
        key: str,
        raw: bytes,
        headers: Mapping[str, str],
        owner: str,
        lease: float,
    ) -> tuple[int | None, Remembered | None]:
        """Take the right to answer ``merchant``'s ``(call, key)``.

        :param merchant: whose call it is (``None``: the app's own): one
            merchant's order is never another's.
        :returns: ``(id, None)`` when ``owner`` now answers it (new, failed
            before, or abandoned); ``(None, remembered)`` otherwise: answered
            already, or being answered by another request right now.
        """
        values = self.database.values(
            merchant=merchant or "",
            call=call,
            key=key,
            raw=raw,
            headers=dict(headers),
            owner=owner,
            lease=lease,
        )
        taken = self.database.write(lambda c: c.execute(self._take, values).scalar())
        if taken is not None:
            return int(taken), None
        return None, self.get(merchant, call, key)

    def settle(
        self,
        answer_id: int,
        owner: str,
        status: AnswerStatus,
        *,
        answer: dict[str, t.Any] | None = None,
        errors: dict[str, t.Any] | None = None,
    ) -> bool:
        """Remember the outcome of a call ``owner`` answered; ``False`` if it lost the lease."""
        values = self.database.values(
            id=answer_id, owner=owner, status=status, answer=answer, errors=errors
        )
        return bool(self.database.execute(self._settle, values))

    def get(self, merchant: str | None, call: str, key: str) -> Remembered | None:
        """``merchant``'s remembered call, if any."""
        query = sa.select(loyalty_answers).where(
            L.inbox == self.database.name,
            L.merchant == (merchant or ""),
            L.call == call,
            L.key == key,
        )
        row = self.database.read(query).one_or_none()
        return None if row is None else _remembered(row)

    def recent(self, limit: int = 50) -> list[Remembered]:
        """Remembered calls, newest first (read-only, for operators)."""
        query = (
            sa.select(loyalty_answers)
            .where(L.inbox == self.database.name)
            .order_by(L.id.desc())
            .limit(limit)
        )
        return [_remembered(row) for row in self.database.read(query)]

    def housekeep(self, retention: float, batch: int = 500, batches: int = 20) -> int:
        """Forget answers older than ``retention`` seconds (never one being answered)."""
        old = sa.select(L.id).where(
            L.inbox == bound("inbox"),
            L.status != "answering",
            L.updated_at < self.database.clock.plus("b_age"),
        )
        return self.database.delete_batches(
            loyalty_answers.delete().where(L.id.in_(old.limit(batch).scalar_subquery())),
            self.database.values(age=-retention),
            pending=sa.select(sa.literal(True)).where(L.id.in_(old.limit(1).scalar_subquery())),
            batch=batch,
            batches=batches,
        )


def _remembered(row: sa.Row[t.Any]) -> Remembered:
    fields = {f.name for f in dataclasses.fields(Remembered)}
    found = {k: v for k, v in row._mapping.items() if k in fields}
    return Remembered(**{**found, "merchant": found["merchant"] or None})
