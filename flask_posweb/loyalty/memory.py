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
import functools
import hashlib
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from ..inbox import Inbox
from ..inbox.database import loyalty_answers

__all__ = ["LoyaltyMemory", "Remembered", "order_key"]

L = loyalty_answers.c
AnswerStatus = t.Literal["answering", "answered", "failed"]


def order_key(data: Mapping[str, t.Any], raw: bytes) -> str:
    """What makes two calls the same order: its ``ID`` (at most 200 characters,
    checked by the schema), else the exact body."""
    order_id = data.get("ID")
    if order_id:
        return f"id:{order_id}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


@dataclasses.dataclass(frozen=True)
class Remembered:
    """One remembered call."""

    id: int
    call: str
    key: str
    status: AnswerStatus
    answer: dict[str, t.Any] | None
    errors: dict[str, t.Any] | None
    locked_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class LoyaltyMemory:
    """Remembered answers, in the inbox's database (and through its writer)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        clock, now = inbox.clock, inbox.clock.now()
        dialect = inbox.engines.dialect
        insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(
            loyalty_answers
        )
        statement = insert.values(
            inbox=sa.bindparam("b_inbox"),
            call=sa.bindparam("b_call"),
            key=sa.bindparam("b_key"),
            status="answering",
            raw=sa.bindparam("b_raw"),
            headers=sa.bindparam("b_headers", type_=L.headers.type),
            created_at=now,
            updated_at=now,
            locked_by=sa.bindparam("b_owner"),
            locked_until=clock.plus("b_lease"),
        )
        # A failed call, or one whose provider's lease ran out, is taken over;
        # an answered one, or one being answered, is left as it is.
        self._take = statement.on_conflict_do_update(
            index_elements=[L.inbox, L.call, L.key],
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
            .where(L.id == sa.bindparam("b_id"), L.locked_by == sa.bindparam("b_owner"))
            .values(
                status=sa.bindparam("b_status"),
                answer=sa.bindparam("b_answer", type_=L.answer.type),
                errors=sa.bindparam("b_errors", type_=L.errors.type),
                locked_by=None,
                locked_until=None,
                updated_at=now,
            )
        )

    def take(
        self,
        call: str,
        key: str,
        raw: bytes,
        headers: Mapping[str, str],
        owner: str,
        lease: float,
    ) -> tuple[int | None, Remembered | None]:
        """Take the right to answer ``(call, key)``.

        :returns: ``(id, None)`` when ``owner`` now answers it (new, failed
            before, or abandoned); ``(None, remembered)`` otherwise: answered
            already, or being answered by another request right now.
        """
        values = self.inbox.clock.bind(
            {
                "b_inbox": self.inbox.name,
                "b_call": call,
                "b_key": key,
                "b_raw": raw,
                "b_headers": dict(headers),
                "b_owner": owner,
                "b_lease": lease,
            }
        )
        taken = self.inbox._write(lambda c: c.execute(self._take, values).scalar())
        if taken is not None:
            return int(taken), None
        return None, self.get(call, key)

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
        values = self.inbox.clock.bind(
            {
                "b_id": answer_id,
                "b_owner": owner,
                "b_status": status,
                "b_answer": answer,
                "b_errors": errors,
            }
        )
        return bool(self.inbox._write(lambda c: c.execute(self._settle, values).rowcount))

    def get(self, call: str, key: str) -> Remembered | None:
        """The remembered call, if any."""
        query = sa.select(loyalty_answers).where(
            L.inbox == self.inbox.name, L.call == call, L.key == key
        )
        row = self.inbox._read(query).one_or_none()
        return None if row is None else _remembered(row)

    def list(self, limit: int = 50) -> list[Remembered]:
        """Remembered calls, newest first (read-only, for operators)."""
        query = (
            sa.select(loyalty_answers)
            .where(L.inbox == self.inbox.name)
            .order_by(L.id.desc())
            .limit(limit)
        )
        return [_remembered(row) for row in self.inbox._read(query)]

    def housekeep(self, retention: float, batch: int = 500, batches: int = 20) -> int:
        """Forget answers older than ``retention`` seconds (never one being answered)."""
        old = (
            sa.select(L.id)
            .where(
                L.inbox == sa.bindparam("b_inbox"),
                L.status != "answering",
                L.updated_at < self.inbox.clock.plus("b_age"),
            )
            .limit(batch)
            .scalar_subquery()
        )
        statement = loyalty_answers.delete().where(L.id.in_(old))
        total = 0
        for _ in range(batches):
            values = self.inbox.clock.bind({"b_inbox": self.inbox.name, "b_age": -retention})
            done = self.inbox._write(functools.partial(_rowcount, statement, values))
            total += done
            if done < batch:
                break
        return total


def _rowcount(statement: sa.Executable, values: dict[str, t.Any], connection: sa.Connection) -> int:
    return int(connection.execute(statement, values).rowcount)


def _remembered(row: sa.Row[t.Any]) -> Remembered:
    fields = {f.name for f in dataclasses.fields(Remembered)}
    return Remembered(**{k: v for k, v in row._mapping.items() if k in fields})
