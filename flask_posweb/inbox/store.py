"""The durable inbox: every delivery is committed here before it is acknowledged.

Where a delivery goes next is decided in :mod:`.states`, what counts as a
duplicate in :mod:`.duplicates`, how writes wait in :mod:`.writer`; this
module puts them together: :class:`Inbox` writes deliveries and their
outcomes, and reads and prunes them through the parts in :mod:`.reading` and
:mod:`.housekeeping`. Its SQL is built once (:mod:`.statements`).

Dispatchers (the request, a background thread, ``flask posweb worker``, a
Celery task) take a delivery with a *lease*: a compare-and-set on
``locked_by``/``locked_until``, so no two dispatchers run one delivery at once,
and one whose dispatcher died is taken again once its lease runs out.

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime as dt
import typing as t
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import sqlalchemy as sa

from .answers import Answers
from .database import Database
from .database import bound
from .deadline import Deadline
from .duplicates import Scope
from .filters import Filter
from .housekeeping import Housekeeping
from .liveness import Liveness
from .reading import Reading
from .records import Admission
from .records import Attempt
from .records import Delivery
from .records import ReceiverSet
from .statements import D
from .statements import Statements
from .statements import free
from .statements import where
from .states import Status
from .tables import deliveries

__all__ = ["Inbox"]


class Inbox(Reading, Housekeeping, Liveness):
    """Deliveries in an SQL database (SQLite or PostgreSQL), via SQLAlchemy Core.

    :param database: see :class:`~.database.Database`; :meth:`from_url` makes one.
    :param duplicate_window: ``POSWEB_DUPLICATE_WINDOW`` in seconds (see :mod:`.duplicates`).

    .. versionadded:: 0.1
    .. versionchanged:: 0.3
        Made from a :class:`~.database.Database`.
    """

    def __init__(self, database: Database, *, duplicate_window: float = 600) -> None:
        self.database = database
        self.duplicate_window = duplicate_window
        #: Remembered loyalty answers, in the same database (see :mod:`.answers`).
        self.answers = Answers(database)
        self._sql = Statements(database.engines.dialect, database.clock)
        self._registered: set[str] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 5,
        name: str = "default",
        duplicate_window: float = 600,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> Inbox:
        """The inbox at a database URL. Nothing is connected until first use,
        so an app starts while its database is down.

        An in-memory SQLite URL (``sqlite://``) gives a private database in a
        temporary file, removed by :meth:`close`.

        :param timeout: ``POSWEB_DATABASE_TIMEOUT``: the longest a write waits in all.
        :param name: ``POSWEB_INBOX_NAME``: this inbox's rows, among others in the database.
        :param clock: returns naive UTC now; tests pass their own. By default
            PostgreSQL's own clock is used in SQL.
        """
        database = Database.from_url(url, timeout=timeout, name=name, clock=clock)
        return cls(database, duplicate_window=duplicate_window)

    @property
    def name(self) -> str:
        """``POSWEB_INBOX_NAME``."""
        return self.database.name

    @property
    def clock(self) -> t.Any:
        """Where "now" comes from (see :mod:`.clock`)."""
        return self.database.clock

    def close(self) -> None:
        """Close every connection (they are opened again when needed)."""
        self.database.close()

    # -- receiving -----------------------------------------------------------------

    def admit(
        self,
        event: str,
        raw: bytes,
        headers: Mapping[str, str],
        *,
        receivers: ReceiverSet,
        merchant: str | None = None,
        resource: str | None = None,
        missing: Sequence[str] = (),
        owner: str | None = None,
        lease: float = 0,
        enqueued: bool = False,
        deadline: Deadline | None = None,
    ) -> Admission:
        """Store a valid delivery as ``pending``, unless it is a duplicate.

        Returns once the row is on disk. See :mod:`.duplicates` for the rule.

        :param receivers: the receivers the receiving app has for the event:
            only a dispatcher with all of them may take the delivery.
        :param merchant: who sent it (``None``: the app's own credentials).
            Duplicates are per merchant: two merchants' equal bodies are two deliveries.
        :param resource: what the body is about (its resource key's value).
        :param owner: lease the new delivery to this dispatcher at once (and count
            its first attempt), so that no one else takes it while it runs.
        :param enqueued: a task engine is asked to dispatch it right after the
            commit: stamp ``enqueued_at`` now (see :meth:`take_for_relay`).
        """
        scope = Scope.of(self.name, merchant, event, raw, resource)
        values = self.database.values(
            merchant=merchant or "",
            event=event,
            status="pending",
            raw=raw,
            headers=dict(headers),
            errors=None,
            missing=list(missing) or None,
            receiver_set=receivers.key,
            owner=owner,
            lease=lease,
        )
        register = receivers.key not in self._registered

        def store(connection: sa.Connection) -> Admission:
            if register:
                connection.execute(
                    self._sql.register,
                    self.database.values(
                        key=receivers.key, event=event, receivers=sorted(receivers.names)
                    ),
                )
            return self._admit(
                connection,
                self._sql.insert(leased=owner is not None, enqueued=enqueued),
                values,
                scope,
                enqueued,
            )

        admission = self.database.write(store, deadline)
        self._registered.add(receivers.key)
        return admission

    def _admit(
        self,
        connection: sa.Connection,
        insert: sa.Insert,
        values: dict[str, t.Any],
        scope: Scope,
        enqueued: bool = False,
    ) -> Admission:
        """The new row and its duplicate claim, in the transaction of ``connection``:
        one statement on PostgreSQL (see :meth:`.statements.Statements.insert`),
        two on SQLite, where a statement is a call, not a round trip."""
        claim: dict[str, t.Any] = {"b_scope": scope.key, "b_body_hash": scope.body_hash}
        claim.update(self.database.clock.bind({"b_since": -self.duplicate_window}))
        if self._sql.one_statement:
            row = connection.execute(insert, {**values, **claim}).first()
            if row is not None:
                return Admission(_new_delivery(values, enqueued, row), new=True)
        else:
            delivery_id = _inserted_id(connection.execute(insert, values))
            claim["b_delivery_id"] = delivery_id
            if connection.execute(self._sql.claim_scope, claim).rowcount:
                return Admission(_new_delivery(values, enqueued, delivery_id), new=True)
            # A duplicate: the row just written goes again (inside this transaction).
            connection.execute(self._sql.delete, {"b_id": delivery_id})
        found = connection.execute(self._sql.in_scope, {"b_scope": scope.key}).one()
        return Admission(Delivery(**found._mapping), new=False)

    def reject(
        self,
        event: str,
        raw: bytes,
        headers: Mapping[str, str],
        errors: dict[str, t.Any],
        *,
        merchant: str | None = None,
        deadline: Deadline | None = None,
    ) -> Delivery:
        """Keep a delivery that failed validation, with its errors, for a later replay.

        The same body refused again for the same reason within the duplicate
        window is the one kept; for another reason, or after the one kept was
        replayed, it is kept anew. Rejected deliveries are bounded by count and
        age (see :meth:`housekeep`).
        """
        scope = Scope.of(self.name, merchant, event, raw, None, refusal=errors)
        values = self.database.values(
            merchant=merchant or "", event=event, status="rejected", raw=raw,
            headers=dict(headers), errors=errors, missing=None, receiver_set=None, owner=None,
            lease=0,
        )  # fmt: skip

        def store(connection: sa.Connection) -> Delivery:
            admission = self._admit(connection, self._sql.rejected, values, scope)
            if admission.new or admission.delivery.status == "rejected":
                return admission.delivery
            # Its twin was replayed since: this refusal is one of its own.
            result = connection.execute(self._sql.rejected_row, values)
            row = result.one() if self._sql.one_statement else _inserted_id(result)
            delivery = _new_delivery(values, False, row)
            connection.execute(
                self._sql.rescope, self.database.values(scope=scope.key, delivery_id=delivery.id)
            )
            return delivery

        return self.database.write(store, deadline)

    # -- dispatching -----------------------------------------------------------------

    def claim(
        self,
        delivery_id: int,
        owner: str,
        lease: float,
        receivers: Iterable[str],
        *,
        repeat: bool = False,
        deadline: Deadline | None = None,
    ) -> Delivery | None:
        """Lease one delivery to ``owner`` now, due or not; ``None`` if it is not
        dispatchable, another dispatcher holds it, or it expects receivers
        other than the sets ``receivers`` (keys).

        :param repeat: DealPOS sent its body again: a failed or dead delivery
            is taken too, with a fresh attempt budget if dead (:data:`.states.REPEAT`).
        """
        statement = self._sql.claim_repeat if repeat else self._sql.claim
        values = self.database.values(
            id=delivery_id, owner=owner, lease=lease, sets=list(receivers)
        )
        row = self.database.write(lambda c: c.execute(statement, values).first(), deadline)
        return None if row is None else Delivery(**row._mapping)

    def repeat(self, delivery_id: int, *, deadline: Deadline | None = None) -> bool:
        """DealPOS sent a failed or dead delivery's body again: make it due now
        (for a dispatcher elsewhere). ``False`` if there was nothing to do."""
        values = self.database.values(id=delivery_id)
        result = self.database.write(lambda c: c.execute(self._sql.repeat, values), deadline)
        return bool(result.rowcount)

    def due_merchants(self, receivers: Iterable[str], limit: int = 1000) -> list[str | None]:
        """The merchants that have deliveries due now and free, among those whose
        expected receivers are one of the sets ``receivers`` (keys): the one whose
        delivery has waited longest first (``None``: the app's own)."""
        values = self.database.values(sets=list(receivers), limit=limit)
        rows = self.database.read(self._sql.due_merchants, values).scalars()
        return [merchant or None for merchant in rows]

    def others_due(self, receivers: Iterable[str], merchant: str | None) -> bool:
        """Whether a merchant other than ``merchant`` has a delivery due now and
        free (among ``receivers``, as :meth:`due_merchants`): cheap whatever
        ``merchant``'s own backlog, for a runner to cut its turn short.

        .. versionadded:: 0.3
        """
        values = self.database.values(sets=list(receivers), merchant=merchant or "")
        return self.database.read(self._sql.others_due, values).first() is not None

    def claim_due(
        self, owner: str, lease: float, receivers: Iterable[str], merchant: str | None = None
    ) -> Delivery | None:
        """Lease ``merchant``'s delivery due first, among those whose expected
        receivers are one of the sets ``receivers`` (keys) or unknown (kept from 0.1)."""
        values = self.database.values(
            owner=owner, lease=lease, sets=list(receivers), merchant=merchant or ""
        )
        row = self.database.write(lambda c: c.execute(self._sql.claim_due, values).first())
        return None if row is None else Delivery(**row._mapping)

    def extend(self, delivery_id: int, owner: str, lease: float) -> bool:
        """Renew ``owner``'s lease; ``False`` if it was lost to another dispatcher."""
        values = self.database.values(id=delivery_id, owner=owner, lease=lease)
        result = self.database.write(lambda c: c.execute(self._sql.extend, values), durable=False)
        return bool(result.rowcount)

    def finish(
        self,
        delivery: Delivery,
        owner: str,
        outcomes: Iterable[Attempt],
        status: Status,
        *,
        retry_in: float | None = None,
        errors: dict[str, t.Any] | None = None,
    ) -> bool:
        """Record receiver outcomes and the new status, and release the lease.

        Written without waiting for the disk: losing it to a crash only runs the
        delivery again (receivers are at least once).

        :param retry_in: seconds until the next attempt (a failed delivery).
        :returns: ``False`` if ``owner`` had lost its lease: nothing is written,
            the delivery belongs to the dispatcher that took it over.
        """
        values = self._finished(delivery, owner, outcomes, status, retry_in, errors)
        result = self.database.write(lambda c: c.execute(self._sql.finish, values), durable=False)
        return bool(result.rowcount)

    def finish_later(
        self,
        delivery: Delivery,
        owner: str,
        outcomes: Iterable[Attempt],
        status: Status,
        then: Callable[[bool, BaseException | None], None],
        *,
        retry_in: float | None = None,
    ) -> None:
        """:meth:`finish`, without taking the lock for it: it is committed with
        this process's next write (a delivery's) or by :meth:`flush`.

        Until then the delivery stays leased to ``owner``; if the outcome is
        lost (a crash), the lease runs out and the delivery runs again: at least
        once, as ever.

        :param then: told, in the committing thread, whether it was recorded
            (``False``: the lease was lost) or the error that kept it from
            being written. It must be quick: it runs in a commit's path.

        .. versionadded:: 0.3
        """
        values = self._finished(delivery, owner, outcomes, status, retry_in, None)

        def done(result: t.Any, error: BaseException | None) -> None:
            then(error is None and bool(result.rowcount), error)

        self.database.write_later(lambda c: c.execute(self._sql.finish, values), done)

    def flush(self) -> None:
        """Commit the outcomes queued by :meth:`finish_later` now, if any.

        .. versionadded:: 0.3
        """
        self.database.flush()

    @property
    def unsettled(self) -> int:
        """Outcomes queued by :meth:`finish_later`, not committed yet.

        .. versionadded:: 0.3
        """
        return self.database.writer.waiting

    def _finished(
        self,
        delivery: Delivery,
        owner: str,
        outcomes: Iterable[Attempt],
        status: Status,
        retry_in: float | None,
        errors: dict[str, t.Any] | None,
    ) -> dict[str, t.Any]:
        return self.database.values(
            id=delivery.id,
            owner=owner,
            status=status,
            retry_in=retry_in,
            errors=errors,
            outcomes=delivery.outcomes + [o.stored() for o in outcomes],
        )

    def mark_unsent(self, delivery_ids: Sequence[int]) -> None:
        """Record that the tasks of these deliveries could not be sent, so that
        the relay sends them as soon as it can (not ``requeue_after`` later)."""
        values = self.database.values(ids=list(delivery_ids))
        self.database.write(lambda c: c.execute(self._sql.unsent, values), durable=False)

    def take_for_relay(
        self, receivers: Iterable[str], requeue_after: float, limit: int = 500
    ) -> list[tuple[int, str | None]]:
        """Deliveries a task engine should be asked (again) to dispatch: due,
        held by no dispatcher, with receivers the asking app has, and not sent
        within ``requeue_after`` seconds (a task sent then was lost, or is still
        queued). Each is stamped as sent now, in the same statement, so that
        relays running side by side rarely send one twice (a duplicate task is
        harmless: the first to take the lease runs it).

        Merchants take turns: every merchant's first due delivery comes before
        any merchant's second.

        :returns: ``(id, merchant)`` of each, by id.
        """
        values = self.database.values(
            sets=list(receivers), requeue_after=-requeue_after, limit=limit
        )
        if not self.database.read(self._sql.relay_pending, values).first():
            return []
        rows = self.database.write(
            lambda c: c.execute(self._sql.take_for_relay, values).all(), durable=False
        )
        return sorted((row.id, row.merchant or None) for row in rows)

    def replay(
        self,
        which: Filter,
        *,
        adopt: Iterable[ReceiverSet] = (),
        expecting: Iterable[str] | None = None,
    ) -> int:
        """Make the chosen deliveries due again as replays (:data:`.states.REPLAY`);
        returns how many. Deliveries a dispatcher holds are left alone.

        :param expecting: only those expecting one of these receiver sets
            (keys): those whose receivers the replaying app has.
        :param adopt: the receivers of the app that adopts them, one set per
            event: the chosen deliveries of those events expect these from now
            on (a stranded delivery's receivers were renamed or removed).
            Receivers that succeeded in this generation under the same name are
            not run again; every other one of the set runs once.

        .. versionchanged:: 0.3
            ``adopt``.
        """
        sets = {found.event: found for found in adopt}
        values: dict[str, t.Any] = dict(self._sql.replay_values)
        clauses = [D.inbox == bound("inbox"), *where(which), free(self.clock)]
        if expecting is not None:
            keys = list(expecting)
            clauses.append(sa.or_(D.receiver_set.is_(None), D.receiver_set.in_(keys)))
        if sets:
            values["receiver_set"] = sa.case(
                {event: found.key for event, found in sets.items()}, value=D.event
            )
            clauses.append(D.event.in_(list(sets)))
        statement = deliveries.update().where(*clauses).values(values)

        def run(connection: sa.Connection) -> int:
            for found in sets.values():
                connection.execute(
                    self._sql.register,
                    self.database.values(
                        key=found.key, event=found.event, receivers=sorted(found.names)
                    ),
                )
            return int(connection.execute(statement, self.database.values()).rowcount)

        return self.database.write(run)

    def hurry(self, which: Filter) -> int:
        """Make the chosen failed deliveries due now instead of after their
        backoff (tests; nothing else changes). Returns how many."""
        statement = (
            deliveries.update()
            .where(D.inbox == bound("inbox"), D.status == "failed", *where(which))
            .values(next_attempt_at=self.clock.now())
        )
        return self.database.write(lambda c: c.execute(statement, self.database.values()).rowcount)


def _inserted_id(result: sa.CursorResult[t.Any]) -> int:
    """The id SQLite gave the row just inserted (the cursor's ``lastrowid``)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _new_delivery(values: Mapping[str, t.Any], enqueued: bool, row: t.Any) -> Delivery:
    """The delivery an insert of :class:`~.statements.Statements` just wrote: its
    bound ``values``, the constants the insert writes, and what the database
    decided: ``row``, its id, or a row of the id and the times its clock wrote."""
    status = values["b_status"]
    leased = values["b_owner"] is not None
    if isinstance(row, int):  # SQLite: the times are the ones bound
        received_at, locked_until = values["now"], values.get("b_lease__at")
    else:
        row, received_at, locked_until = row.id, row.received_at, row.locked_until
    return Delivery(
        id=row,
        inbox=values["b_inbox"],
        merchant=values["b_merchant"] or None,
        event=values["b_event"],
        status=status,
        raw=values["b_raw"],
        headers=values["b_headers"],
        errors=values["b_errors"] if status == "rejected" else None,
        missing=values["b_missing"],
        receiver_set=values["b_receiver_set"],
        outcomes=[],
        attempts=1 if leased else 0,
        generation=0,
        replay=False,
        received_at=received_at,
        updated_at=received_at,
        next_attempt_at=received_at if status == "pending" else None,
        locked_by=values["b_owner"],
        locked_until=locked_until if leased else None,
        enqueued_at=received_at if enqueued else None,
    )
