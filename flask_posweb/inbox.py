"""The durable inbox: every delivery is committed here before it is acknowledged.

A delivery moves through these statuses::

    pending --(all receivers ok)--> processed
       |  \\--(a receiver failed)--> failed --(retry ok)--> processed
       |                              \\--(max attempts)--> dead
    rejected (failed validation; kept with its errors, replayable)

Dispatchers (the request, a background thread, ``flask posweb worker``) take
a delivery with a *lease*: a compare-and-set on ``locked_until``, so no two
dispatchers handle one delivery at once, and a delivery whose dispatcher died
is taken again once its lease runs out. All times are naive UTC.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import typing as t
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import sqlalchemy as sa

from .commits import GroupCommit
from .database import Writer
from .database import create_engine
from .database import create_tables
from .database import deliveries
from .exceptions import StoreError
from .prepared import Prepared
from .records import DISPATCHABLE
from .records import STATUSES
from .records import Admission
from .records import Attempt
from .records import Delivery
from .records import Status
from .records import dedup_key
from .records import utcnow
from .statements import BY_KEY
from .statements import FINISH
from .statements import REFUSED_AGAIN
from .statements import D
from .statements import Filter
from .statements import RowInsert
from .statements import free

__all__ = [
    "DISPATCHABLE",
    "STATUSES",
    "Status",
    "Admission",
    "Attempt",
    "Delivery",
    "Filter",
    "Inbox",
    "dedup_key",
    "utcnow",
]


class Inbox:
    """Deliveries in an SQL database (SQLite or PostgreSQL), via SQLAlchemy Core.

    :param engine: see :func:`~flask_posweb.database.create_engine`.
    :param clock: returns naive UTC now; tests pass their own.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        rejected_max_count: int = 10_000,
        rejected_max_age: float = 30 * 86400,
        clock: Callable[[], dt.datetime] = utcnow,
        timeout: float = 5,
    ) -> None:
        self.engine = engine
        self._tables_ready = False
        self._writer = Writer(engine, timeout)
        self._commits = GroupCommit(self._write)
        self._insert_row = RowInsert(engine.dialect)
        self._finish = Prepared(FINISH, engine.dialect)
        self.rejected_max_count = rejected_max_count
        self.rejected_max_age = dt.timedelta(seconds=rejected_max_age)
        self.clock = clock

    @classmethod
    def from_url(cls, url: str, timeout: float = 5, **kwargs: t.Any) -> Inbox:
        """The inbox at a database URL. Nothing is connected until first use,
        so an app starts while its database is down; tables are created then."""
        return cls(create_engine(url, timeout), timeout=timeout, **kwargs)

    def close(self) -> None:
        """Close every connection (they are opened again when needed)."""
        self._writer.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            if not self._tables_ready:
                create_tables(self.engine)
                self._tables_ready = True
            yield
        except sa.exc.IntegrityError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            # Locked past the timeout, read-only, disk full, server down: the
            # caller answers 503 so that DealPOS retries.
            cause = getattr(exc, "orig", None) or exc
            raise StoreError(f"The inbox is unavailable ({type(cause).__name__}).") from exc

    @contextlib.contextmanager
    def _write(self, durable: bool = True) -> Iterator[sa.Connection]:
        """A write transaction.

        :param durable: ``False`` lets the commit return before it is on disk
            (SQLite ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``):
            a crash may lose it, never corrupt anything. Only for writes whose
            loss costs a repeat, not a delivery (a receiver's outcome).
        """
        with self._translated(), self._writer.transaction(durable) as connection:
            yield connection

    # -- receiving ---------------------------------------------------------------

    def _row(
        self,
        event: str,
        raw: bytes,
        headers: dict[str, str],
        *,
        status: Status = "pending",
        owner: str | None = None,
        lease: float = 0,
        key: str | None = None,
        dispatch: bool = True,
        errors: t.Any = None,
    ) -> dict[str, t.Any]:
        now = self.clock()
        return dict(
            event=event,
            dedup_key=f"{event}:{key}" if key is not None else dedup_key(event, raw),
            status=status,
            raw=raw,
            headers=headers,
            errors=errors,
            answer=None,
            outcomes=[],
            attempts=1 if owner else 0,
            generation=0,
            replay=False,
            received_at=now,
            updated_at=now,
            next_attempt_at=now if dispatch else None,
            locked_by=owner,
            locked_until=now + dt.timedelta(seconds=lease) if owner else None,
        )

    def admit(
        self,
        event: str,
        raw: bytes,
        headers: dict[str, str],
        *,
        owner: str | None = None,
        lease: float = 0,
        key: str | None = None,
        dispatch: bool = True,
    ) -> Admission:
        """Store a valid delivery as ``pending``, or find the one already stored.

        Returns once the row is committed (on disk). Threads storing at the same
        moment share one commit (see :class:`~.commits.GroupCommit`).

        :param owner: lease the new delivery to this dispatcher (and count its
            first attempt), so that no one else takes it while it is dispatched.
        :param key: the duplicate key, when the body has a better one than its
            hash (a loyalty order's id); see :func:`dedup_key`.
        :param dispatch: ``False`` for rows no dispatcher should ever take
            (remembered loyalty answers).
        """
        row = self._row(event, raw, headers, owner=owner, lease=lease, key=key, dispatch=dispatch)
        return self._commits.submit(lambda connection: self._insert(connection, row))

    def reject(self, event: str, raw: bytes, headers: dict[str, str], errors: t.Any) -> Delivery:
        """Keep a delivery that failed validation, with its errors, for a later replay.

        A repeat of a rejected body updates its errors. Rejected deliveries are
        bounded by count and age; the oldest go first.
        """
        row = self._row(event, raw, headers, status="rejected", dispatch=False, errors=errors)
        return self._commits.submit(lambda connection: self._insert(connection, row)).delivery

    def _insert(self, connection: sa.Connection, row: dict[str, t.Any]) -> Admission:
        """Insert a row unless its duplicate key is stored.

        ``INSERT ... ON CONFLICT DO NOTHING`` makes "insert unless seen" one
        atomic statement on both databases, and a duplicate does not abort the
        transaction that other rows share (see :class:`~.commits.GroupCommit`).
        """
        new_id = self._insert_row(connection, row)
        if new_id is not None:
            if row["status"] == "rejected":
                self._bound_rejected(connection)
            return Admission(Delivery(id=new_id, **row), new=True)
        found = connection.execute(BY_KEY, {"key": row["dedup_key"]}).one()
        existing = Delivery(**found._mapping)
        if row["status"] == "rejected" and existing.status == "rejected":
            params = {"b_id": existing.id, "b_errors": row["errors"], "b_now": row["updated_at"]}
            connection.execute(REFUSED_AGAIN, params)
            existing = dataclasses.replace(existing, errors=row["errors"])
        return Admission(existing, new=False)

    def _bound_rejected(self, connection: sa.Connection) -> None:
        newest_dropped = (
            sa.select(D.id)
            .where(D.status == "rejected")
            .order_by(D.id.desc())
            .offset(self.rejected_max_count)
            .limit(1)
            .scalar_subquery()
        )
        connection.execute(
            deliveries.delete().where(
                D.status == "rejected",
                sa.or_(
                    D.received_at < self.clock() - self.rejected_max_age, D.id <= newest_dropped
                ),
            )
        )

    # -- dispatching ---------------------------------------------------------------

    def claim(
        self, delivery_id: int, owner: str, lease: float, statuses: Sequence[str] = DISPATCHABLE
    ) -> Delivery | None:
        """Lease one delivery to ``owner`` now, due or not; ``None`` if someone holds it."""
        where = [D.id == delivery_id, D.status.in_(statuses)]
        with self._write() as connection:
            leased = self._lease(connection, where, owner, lease, limit=1)
        return leased[0] if leased else None

    def claim_due(self, owner: str, lease: float, limit: int = 10) -> list[Delivery]:
        """Lease up to ``limit`` deliveries whose (next) attempt is due, oldest first."""
        where = [D.status.in_(DISPATCHABLE), D.next_attempt_at <= self.clock()]
        with self._write() as connection:
            return self._lease(connection, where, owner, lease, limit)

    def _lease(
        self,
        connection: sa.Connection,
        where: list[sa.ColumnElement[bool]],
        owner: str,
        lease: float,
        limit: int,
    ) -> list[Delivery]:
        now = self.clock()
        # SQLite: the transaction began IMMEDIATE, so this select-then-update
        # runs alone. PostgreSQL: SKIP LOCKED lets concurrent dispatchers pass
        # over rows another one is leasing instead of waiting for it.
        ids = (
            connection.execute(
                sa.select(D.id)
                .where(*where, free(now))
                .order_by(D.next_attempt_at, D.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        connection.execute(
            deliveries.update()
            .where(D.id.in_(ids))
            .values(
                locked_by=owner,
                locked_until=now + dt.timedelta(seconds=lease),
                attempts=D.attempts + 1,
                updated_at=now,
            )
        )
        rows = connection.execute(sa.select(deliveries).where(D.id.in_(ids)).order_by(D.id))
        return [Delivery(**row._mapping) for row in rows]

    def extend(self, delivery_id: int, owner: str, lease: float) -> bool:
        """Renew ``owner``'s lease (before each receiver); ``False`` if it was lost."""
        now = self.clock()
        with self._write() as connection:
            result = connection.execute(
                deliveries.update()
                .where(D.id == delivery_id, D.locked_by == owner)
                .values(locked_until=now + dt.timedelta(seconds=lease))
            )
        return result.rowcount == 1

    @staticmethod
    def succeeded(delivery: Delivery) -> set[str]:
        """Receivers that already succeeded for this delivery's current generation."""
        return {
            o["receiver"]
            for o in delivery.outcomes
            if o["ok"] and o["generation"] == delivery.generation
        }

    def finish(
        self,
        delivery: Delivery,
        owner: str,
        outcomes: Iterable[Attempt],
        status: Status,
        *,
        next_attempt_at: dt.datetime | None = None,
        errors: t.Any = None,
        answer: t.Any = None,
        durable: bool = True,
    ) -> bool:
        """Record receiver outcomes and the new status, and release the lease.

        :param durable: see :meth:`_write`; a dispatcher passes ``False``: losing
            this write to a crash only makes the delivery run again.
        :returns: ``False`` if ``owner`` had lost its lease: nothing is written,
            the delivery belongs to the dispatcher that took it over.
        """
        params = {
            "b_id": delivery.id,
            "b_owner": owner,
            "b_status": status,
            "b_next": next_attempt_at,
            "b_errors": errors,
            "b_answer": answer,
            "b_outcomes": delivery.outcomes + [o.stored() for o in outcomes],
            "b_unlocked": None,
            "b_unlocked_until": None,
            "b_now": self.clock(),
        }
        return self._commits.submit(
            lambda connection: bool(self._finish.execute(connection, params).rowcount == 1),
            durable,
        )

    def retry_now(self, delivery_id: int) -> bool:
        """Make a failed, dead or rejected delivery due now (DealPOS sent it again).

        Dead and rejected ones get a fresh attempt budget; a rejected one is
        validated again when dispatched.
        """
        now = self.clock()
        with self._write() as connection:
            result = connection.execute(
                deliveries.update()
                .where(D.id == delivery_id, D.status.in_(("failed", "dead", "rejected")), free(now))
                .values(
                    status=sa.case((D.status == "rejected", "pending"), else_="failed"),
                    attempts=sa.case((D.status == "failed", D.attempts), else_=0),
                    errors=None,
                    next_attempt_at=now,
                    updated_at=now,
                )
            )
        return result.rowcount == 1

    def mark_replay(self, which: Filter) -> int:
        """Make the chosen deliveries due again as replays; returns how many.

        Processed ones run every receiver again (a new generation); failed and
        dead ones run the receivers that have not succeeded; rejected ones are
        validated again. Each gets a fresh attempt budget. Leased deliveries
        are left alone.
        """
        now = self.clock()
        with self._write() as connection:
            result = connection.execute(
                deliveries.update()
                .where(*which.where(), free(now))
                .values(
                    status=sa.case(
                        (D.status.in_(("processed", "rejected")), "pending"),
                        (D.status == "dead", "failed"),
                        else_=D.status,
                    ),
                    generation=sa.case(
                        (D.status == "processed", D.generation + 1), else_=D.generation
                    ),
                    replay=True,
                    attempts=0,
                    next_attempt_at=now,
                    updated_at=now,
                )
            )
        return result.rowcount

    # -- reading -------------------------------------------------------------------

    def get(self, delivery_id: int) -> Delivery | None:
        """One delivery by id."""
        return self._one(D.id == delivery_id)

    def _one(self, clause: sa.ColumnElement[bool]) -> Delivery | None:
        with self._translated(), self.engine.connect() as connection:
            row = connection.execute(sa.select(deliveries).where(clause)).one_or_none()
        return None if row is None else Delivery(**row._mapping)

    def attempts_of(self, delivery_id: int) -> list[Attempt]:
        """Every receiver call of a delivery, oldest first."""
        delivery = self.get(delivery_id)
        return [] if delivery is None else [Attempt.from_stored(o) for o in delivery.outcomes]

    def select(
        self, which: Filter | None = None, *, limit: int | None = 50, newest_first: bool = True
    ) -> list[Delivery]:
        """Deliveries matching ``which`` (all by default)."""
        which = which or Filter()
        order = D.id.desc() if newest_first else D.id
        query = sa.select(deliveries).where(*which.where()).order_by(order).limit(limit)
        with self._translated(), self.engine.connect() as connection:
            return [Delivery(**row._mapping) for row in connection.execute(query)]

    def ids(self, which: Filter) -> list[int]:
        """Ids of the deliveries matching ``which``, oldest first."""
        query = sa.select(D.id).where(*which.where()).order_by(D.id)
        with self._translated(), self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def counts(self) -> dict[str, int]:
        """Number of deliveries per status."""
        query = sa.select(D.status, sa.func.count()).group_by(D.status)
        with self._translated(), self.engine.connect() as connection:
            found: dict[str, int] = {status: n for status, n in connection.execute(query)}
        return {status: found.get(status, 0) for status in STATUSES}

    # -- housekeeping --------------------------------------------------------------

    def prune(self, older_than: float, batch: int = 1000) -> int:
        """Delete processed deliveries received more than ``older_than`` seconds ago.

        Rejected ones are trimmed to their bounds at the same time. Deletes in
        transactions of ``batch`` rows, so that deliveries arriving meanwhile
        wait for the write lock a moment, not for the whole clean-up. Returns
        how many processed deliveries were deleted.
        """
        cutoff = self.clock() - dt.timedelta(seconds=older_than)
        old = (
            sa.select(D.id)
            .where(D.status == "processed", D.received_at < cutoff)
            .limit(batch)
            .scalar_subquery()
        )
        deleted = 0
        while True:
            with self._write() as connection:
                removed = connection.execute(deliveries.delete().where(D.id.in_(old))).rowcount
            deleted += removed
            if removed < batch:
                break
        with self._write() as connection:
            self._bound_rejected(connection)
        return deleted
