"""The inbox's SQL, built once per inbox: each execution only binds values.

Where a delivery goes next is decided in :mod:`.states`; this module writes
those decisions as SQL (:func:`case`), and the filters operators give as
``WHERE`` clauses (:func:`where`).

.. versionadded:: 0.3
    (0.1 and 0.2 built these in ``store.py``.)
"""

from __future__ import annotations

import datetime as dt
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles

from . import states
from .clock import Clock
from .database import bound
from .duplicates import claim_statement
from .duplicates import rescope_statement
from .filters import Filter
from .states import Status
from .tables import UNUSUAL
from .tables import WAITING
from .tables import deliveries
from .tables import duplicates
from .tables import receiver_sets

__all__ = ["D", "Statements", "case", "free", "upsert", "where"]

D = deliveries.c


def case(mapping: Mapping[Status, Status], column: sa.ColumnElement[str]) -> sa.Case[str]:
    """The SQL ``CASE`` that moves ``column`` as ``mapping`` (a table of
    :mod:`.states`) says; callers filter rows to ``mapping``'s keys."""
    return sa.case({source: target for source, target in mapping.items()}, value=column)


def upsert(dialect: sa.Dialect, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's ``INSERT`` with ``ON CONFLICT`` (both speak it)."""
    return (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)


def free(clock: Clock) -> sa.ColumnElement[bool]:
    """Not leased, or leased by a dispatcher whose lease ran out."""
    return sa.or_(D.locked_by.is_(None), D.locked_until < clock.now())


def where(which: Filter) -> list[sa.ColumnElement[bool]]:
    """The ``WHERE`` clauses of an operator's filter."""
    clauses: list[sa.ColumnElement[bool]] = []
    if which.status:
        clauses.append(D.status.in_(which.status))
        if "processed" not in which.status:  # then the index of the others serves
            clauses.append(UNUSUAL)
    if which.event:
        clauses.append(D.event.in_(which.event))
    if which.merchant:
        clauses.append(D.merchant.in_([m or "" for m in which.merchant]))
    if which.since is not None:
        clauses.append(D.received_at >= which.since)
    if which.until is not None:
        clauses.append(D.received_at < which.until)
    if which.ids:
        clauses.append(D.id.in_(which.ids))
    if which.text:
        clauses.append(_Contains(D.raw, sa.literal(which.text.encode(), sa.LargeBinary())))
    return clauses


class _Contains(sa.sql.functions.FunctionElement[bool]):
    """``haystack`` (bytes) contains ``needle`` (bytes), in each dialect's words."""

    inherit_cache = True
    type = sa.Boolean()
    name = "posweb_contains"


@compiles(_Contains, "sqlite")
def _contains_sqlite(element: _Contains, compiler: t.Any, **kw: t.Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"instr({haystack}, {needle}) > 0"


@compiles(_Contains, "postgresql")
def _contains_postgresql(element: _Contains, compiler: t.Any, **kw: t.Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"position({needle} in {haystack}) > 0"


class Statements:
    """The inbox's SQL, built once: each execution only binds values."""

    def __init__(self, dialect: sa.Dialect, clock: Clock) -> None:
        now, inbox = clock.now(), bound("inbox")
        lease_until = clock.plus("b_lease")
        mine = sa.and_(D.id == bound("id"), D.inbox == inbox)
        everything = [*deliveries.c]
        self.register = _register_statement(dialect, now)
        self.claim_scope = claim_statement(dialect, clock)

        def row(status: Status, leased: bool, enqueued: bool) -> dict[str, t.Any]:
            # What every new row starts with is written into the SQL, not bound:
            # this runs under the write lock, once per delivery.
            return {
                "inbox": inbox,
                "merchant": bound("merchant", type_=D.merchant.type),
                "event": bound("event", type_=D.event.type),
                "status": sa.literal_column(f"'{status}'", D.status.type),
                "raw": bound("raw", type_=D.raw.type),
                "headers": bound("headers", type_=D.headers.type),
                "errors": bound("errors", type_=D.errors.type) if status == "rejected" else None,
                "missing": bound("missing", type_=D.missing.type),
                "receiver_set": bound("receiver_set", type_=D.receiver_set.type),
                "outcomes": sa.literal_column("'[]'", D.outcomes.type),
                "attempts": sa.literal_column("1" if leased else "0", D.attempts.type),
                "generation": sa.literal_column("0", D.generation.type),
                "replay": sa.false(),
                "received_at": now,
                "updated_at": now,
                "next_attempt_at": now if status == "pending" else None,
                "locked_by": bound("owner", type_=D.locked_by.type) if leased else None,
                "locked_until": lease_until if leased else None,
                "enqueued_at": now if enqueued else None,
            }

        def insert(status: Status, leased: bool, enqueued: bool = False) -> sa.Insert:
            """The new row alone. On SQLite nothing comes back but the cursor's
            id: the times are the ones bound (SQLite's clock is this process's)."""
            statement = deliveries.insert().values(row(status, leased, enqueued))
            if dialect.name == "postgresql":
                return statement.returning(D.id, D.received_at, D.locked_until)
            return statement

        def admission(status: Status, leased: bool, enqueued: bool = False) -> sa.Insert:
            """PostgreSQL: the duplicate claim and the new row in one statement,
            one round trip. The claim takes the row's id from the sequence and
            returns it only when the delivery is new; the row is inserted then.
            A duplicate returns no row (the sequence skips a number)."""
            sequence = sa.func.nextval(sa.func.pg_get_serial_sequence(deliveries.name, "id"))
            claim = claim_statement(dialect, clock, delivery_id=sequence)
            claimed = claim.returning(duplicates.c.delivery_id).cte("claim")
            values = row(status, leased, enqueued)
            columns = [sa.cast(claimed.c.delivery_id, D.id.type)] + [
                _typed(value, D[name].type) for name, value in values.items()
            ]
            return (
                deliveries.insert()
                .from_select(["id", *values], sa.select(*columns).select_from(claimed))
                # Only what the database decides comes back: the id, and the
                # times its clock wrote.
                .returning(D.id, D.received_at, D.locked_until)
            )

        self.one_statement = dialect.name == "postgresql"
        build = admission if self.one_statement else insert
        self._inserts = {
            (leased, enqueued): build("pending", leased, enqueued)
            for leased in (False, True)
            for enqueued in (False, True)
        }
        self.rejected = build("rejected", False)
        #: A refusal kept anew, without a claim (its scope is moved to it).
        self.rejected_row = insert("rejected", False)
        self.delete = deliveries.delete().where(D.id == bound("id"))
        self.in_scope = (
            sa.select(deliveries)
            .join(duplicates, duplicates.c.delivery_id == D.id)
            .where(duplicates.c.scope == bound("scope"))
        )
        self.rescope = rescope_statement(clock)
        take = {
            "locked_by": bound("owner"),
            "locked_until": lease_until,
            "attempts": D.attempts + 1,
            "updated_at": now,
        }
        unleased = free(clock)
        # Only a dispatcher that has every receiver the delivery expects (or one
        # kept from 0.1, which expects none in particular).
        expected = sa.or_(
            D.receiver_set.is_(None), D.receiver_set.in_(bound("sets", expanding=True))
        )
        self.claim = (
            deliveries.update()
            .where(mine, WAITING, unleased, expected)
            .values(take)
            .returning(*everything)
        )
        self.claim_repeat = (
            deliveries.update()
            .where(mine, D.status.in_(list(states.REPEAT)), unleased, expected)
            .values(
                {
                    **take,
                    "status": case(states.REPEAT, D.status),
                    # A dead delivery repeated by DealPOS gets a fresh attempt budget.
                    "attempts": sa.case((D.status == "dead", 1), else_=D.attempts + 1),
                }
            )
            .returning(*everything)
        )
        self.repeat = (
            deliveries.update()
            .where(mine, D.status.in_(["failed", "dead"]), unleased)
            .values(
                status=case(states.REPEAT, D.status),
                attempts=sa.case((D.status == "dead", 0), else_=D.attempts),
                next_attempt_at=now,
                updated_at=now,
            )
        )
        # Due now, held by no dispatcher, with receivers the asking app has: what a
        # dispatcher takes next, and what the relay sends tasks for.
        takeable = (
            D.inbox == inbox,
            WAITING,
            D.next_attempt_at <= now,
            unleased,
            expected,
        )
        # The due delivery of one merchant that is due first: dispatchers take
        # merchants in turn (see Inbox.due_merchants), not oldest first across all.
        due = (
            sa.select(D.id)
            .where(*takeable, D.merchant == bound("merchant"))
            .order_by(D.next_attempt_at, D.id)
            .limit(1)
            # PostgreSQL: concurrent dispatchers pass over a row another one is
            # taking instead of waiting for it. SQLite: the write lock serialises.
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        self.due_merchants = (
            sa.select(D.merchant)
            .where(*takeable)
            .group_by(D.merchant)
            .order_by(sa.func.min(D.next_attempt_at), D.merchant)
            .limit(bound("limit", type_=sa.Integer(), literal_execute=True))
        )
        # Whether a merchant other than one has a delivery due: two ranges of
        # the index of the waiting, around the one merchant's rows (a flood).
        others = sa.or_(D.merchant < bound("merchant"), D.merchant > bound("merchant"))
        self.others_due = sa.select(sa.literal(True)).where(*takeable, others).limit(1)
        self.claim_due = deliveries.update().where(D.id == due).values(take).returning(*everything)
        self.extend = (
            deliveries.update()
            .where(mine, D.locked_by == bound("owner"))
            .values(locked_until=lease_until)
        )
        self.finish = (
            deliveries.update()
            .where(mine, D.locked_by == bound("owner"))
            .values(
                status=bound("status"),
                next_attempt_at=clock.plus("b_retry_in"),
                errors=bound("errors", type_=D.errors.type),
                outcomes=bound("outcomes", type_=D.outcomes.type),
                locked_by=None,
                locked_until=None,
                # The task that carried this attempt is done (Celery mode): the
                # relay sends the next one when the retry is due, not a requeue later.
                enqueued_at=None,
                updated_at=now,
            )
        )
        unsent = sa.or_(D.enqueued_at.is_(None), D.enqueued_at < clock.plus("b_requeue_after"))
        # Each merchant's first due delivery, then each one's second...: one
        # merchant's backlog does not hold the others' tasks back.
        turn = sa.func.row_number().over(
            partition_by=D.merchant, order_by=(D.next_attempt_at, D.id)
        )
        ranked = (
            sa.select(D.id, D.next_attempt_at, turn.label("turn"))
            .where(*takeable, unsent)
            .subquery()
        )
        relayable = (
            sa.select(ranked.c.id)
            .order_by(ranked.c.turn, ranked.c.next_attempt_at, ranked.c.id)
            .limit(bound("limit", type_=sa.Integer(), literal_execute=True))
        )
        # Read first, on a snapshot: most looks find nothing to send, and then
        # take no turn at the write lock (the scan is the backlog's).
        self.relay_pending = sa.select(sa.literal(True)).where(*takeable, unsent).limit(1)
        self.take_for_relay = (
            deliveries.update()
            # Checked again on the row itself: a relay beside this one that just
            # stamped it wins (PostgreSQL re-reads a row it had to wait for).
            .where(D.id.in_(relayable.scalar_subquery()), unsent)
            .values(enqueued_at=now)
            .returning(D.id, D.merchant)
        )
        self.unsent = (
            deliveries.update()
            .where(D.inbox == inbox, D.id.in_(bound("ids", expanding=True)))
            .values(enqueued_at=None)
        )
        self.replay_values = {
            "status": case(states.REPLAY, D.status),
            # A finished delivery runs every receiver again: a new generation.
            "generation": sa.case(
                (D.status.in_(["processed", "unhandled"]), D.generation + 1), else_=D.generation
            ),
            "replay": True,
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }

    def insert(self, *, leased: bool, enqueued: bool) -> sa.Insert:
        """A new pending row's statement (with its claim, on PostgreSQL)."""
        return self._inserts[leased, enqueued]


def _typed(value: t.Any, type_: sa.types.TypeEngine[t.Any]) -> sa.ColumnElement[t.Any]:
    """A value of an ``INSERT ... SELECT`` list with its type said: PostgreSQL does
    not infer a bound parameter's type from the column it goes to there."""
    if value is None:
        return sa.cast(sa.null(), type_)
    if isinstance(value, sa.BindParameter):
        return sa.cast(value, type_)
    return t.cast(sa.ColumnElement[t.Any], value)


def _register_statement(dialect: sa.Dialect, now: sa.ColumnElement[dt.datetime]) -> sa.Insert:
    return (
        upsert(dialect, receiver_sets)
        .values(
            key=bound("key"),
            event=bound("event"),
            receivers=bound("receivers", type_=receiver_sets.c.receivers.type),
            first_seen=now,
            # Stored by an app that has them: live (the app's dispatchers say so
            # from then on, see liveness.py).
            last_seen=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
