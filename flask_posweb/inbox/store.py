"""The durable inbox: every delivery is committed here before it is acknowledged.

Where a delivery goes next is decided in :mod:`.states`, what counts as a
duplicate in :mod:`.duplicates`, how writes wait in :mod:`.writer`; this
module puts them together as SQL. Every statement goes through SQLAlchemy
(``echo``, SQL events and tracing see them all) and is built once per inbox.

Dispatchers (the request, a background thread, ``flask posweb worker``, a
Celery task) take a delivery with a *lease*: a compare-and-set on
``locked_by``/``locked_until``, so no two dispatchers run one delivery at once,
and one whose dispatcher died is taken again once its lease runs out.

.. versionadded:: 0.1
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from functools import partial

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from ..exceptions import StoreError
from . import states
from .clock import Clock
from .database import Engines
from .database import create_engines
from .database import deliveries
from .database import driver_reason
from .database import duplicates
from .database import receiver_sets
from .duplicates import Scope
from .duplicates import claim_statement
from .duplicates import rescope_statement
from .migrations import Layout
from .records import Admission
from .records import Attempt
from .records import Delivery
from .records import ReceiverSet
from .states import Status
from .writer import Deadline
from .writer import create_writer

__all__ = ["Filter", "Inbox", "Retention"]

logger = logging.getLogger("flask_posweb")

D = deliveries.c
R = t.TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which deliveries an operator means (every field optional, combined with AND).

    .. versionadded:: 0.1
    """

    status: Sequence[str] = ()
    event: Sequence[str] = ()
    #: Received at or after (naive UTC).
    since: dt.datetime | None = None
    #: Received before (naive UTC).
    until: dt.datetime | None = None
    ids: Sequence[int] = ()
    #: Text the raw body contains (its UTF-8 bytes). A scan of the bodies:
    #: callers bound it with ``since``/``until``.
    text: str | None = None

    def __post_init__(self) -> None:
        # ``Filter(status="failed")`` means one status, not the letters of one.
        for name in ("status", "event"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.status:
            clauses.append(D.status.in_(self.status))
        if self.event:
            clauses.append(D.event.in_(self.event))
        if self.since is not None:
            clauses.append(D.received_at >= self.since)
        if self.until is not None:
            clauses.append(D.received_at < self.until)
        if self.ids:
            clauses.append(D.id.in_(self.ids))
        if self.text:
            clauses.append(_Contains(D.raw, sa.literal(self.text.encode(), sa.LargeBinary())))
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


class Retention(t.NamedTuple):
    """How long finished deliveries are kept, in seconds (see the ``POSWEB_*`` keys)."""

    processed: float
    dead: float
    rejected: float
    rejected_max_count: int


def _execute(statement: sa.Executable, values: dict[str, t.Any], connection: sa.Connection) -> int:
    """Run a statement; how many rows it changed."""
    return int(connection.execute(statement, values).rowcount)


def B(name: str, **kwargs: t.Any) -> sa.BindParameter[t.Any]:
    """A bound value, named ``b_<name>`` (see :meth:`Inbox._values`)."""
    return sa.bindparam(f"b_{name}", **kwargs)


def _free(clock: Clock) -> sa.ColumnElement[bool]:
    """Not leased, or leased by a dispatcher whose lease ran out."""
    return sa.or_(D.locked_by.is_(None), D.locked_until < clock.now())


class Inbox:
    """Deliveries in an SQL database (SQLite or PostgreSQL), via SQLAlchemy Core.

    :param engines: see :func:`~.database.create_engines`.
    :param name: ``POSWEB_INBOX_NAME``: this inbox's rows, among others in the database.
    :param timeout: ``POSWEB_DATABASE_TIMEOUT``: the longest a write waits in all.
    :param duplicate_window: ``POSWEB_DUPLICATE_WINDOW`` in seconds (see :mod:`.duplicates`).
    :param clock: returns naive UTC now; tests pass their own. By default
        PostgreSQL's own clock is used in SQL.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        engines: Engines,
        *,
        name: str = "default",
        timeout: float = 5,
        duplicate_window: float = 600,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engines = engines
        self.name = name
        self.timeout = timeout
        self.duplicate_window = duplicate_window
        self.clock = Clock(engines.dialect.name, clock)
        self._writer = create_writer(engines)
        self.layout = Layout(engines, lambda f: self._writer.write(f, Deadline(max(timeout, 60))))
        self._sql = _Statements(engines.dialect, self.clock)
        self._registered: set[str] = set()
        self._scratch: str | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5, **kwargs: t.Any) -> Inbox:
        """The inbox at a database URL. Nothing is connected until first use,
        so an app starts while its database is down.

        An in-memory SQLite URL (``sqlite://``) gives a private database in a
        temporary file, removed by :meth:`close`: several connections (and
        threads) must see one database.
        """
        scratch = None
        if sa.engine.make_url(url).get_backend_name() == "sqlite" and (
            sa.engine.make_url(url).database in (None, "", ":memory:")
        ):
            scratch = tempfile.mkdtemp(prefix="posweb-")
            url = "sqlite:///" + os.path.join(scratch, "inbox.sqlite3")
        inbox = cls(create_engines(url, timeout), timeout=timeout, **kwargs)
        inbox._scratch = scratch
        if scratch is not None:  # an app that is never closed leaves no file behind
            weakref.finalize(inbox, shutil.rmtree, scratch, True)
        return inbox

    def close(self) -> None:
        """Close every connection (they are opened again when needed)."""
        self._writer.close()
        self.engines.dispose()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- plumbing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Database failures as :class:`StoreError`: the caller answers 503."""
        try:
            self.layout.ensure()
            yield
        except StoreError:
            raise
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            # Locked, read-only, disk full, server down: DealPOS should retry.
            cause = getattr(exc, "orig", None) or exc
            # The log says which (a refused password, a full disk); the answer does not.
            logger.warning("The inbox is unavailable: %s", driver_reason(exc))
            if self.engines.dialect.name == "sqlite":
                # SQLite shares a file's state among every connection of the
                # process: one pooled reader opened while the folder was
                # read-only keeps a read-only shared memory that fails every
                # later write, even once the folder is writable again. Start
                # over with new connections (PostgreSQL's pool pings instead).
                self.engines.dispose()
            raise StoreError(f"The inbox is unavailable ({type(cause).__name__}).") from exc

    def _write(
        self,
        operation: Callable[[sa.Connection], R],
        deadline: Deadline | None = None,
        *,
        durable: bool = True,
    ) -> R:
        with self._translated():
            return self._writer.write(
                operation, deadline or Deadline(self.timeout), durable=durable
            )

    def _read(
        self, query: sa.Executable, params: Mapping[str, t.Any] | None = None
    ) -> sa.Result[t.Any]:
        with self._translated(), self.engines.read.connect() as connection:
            result = connection.execute(query, self.clock.bind(dict(params or {})))
            return result.freeze()()

    def _values(self, **values: t.Any) -> dict[str, t.Any]:
        """Bound values: every name gets ``b_`` (SQLAlchemy reserves column
        names), this inbox's name is one, and so are the clock's times."""
        bound = {f"b_{name}": value for name, value in values.items()}
        bound["b_inbox"] = self.name
        return self.clock.bind(bound)

    # -- receiving -----------------------------------------------------------------

    def admit(
        self,
        event: str,
        raw: bytes,
        headers: Mapping[str, str],
        *,
        receivers: ReceiverSet,
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
        :param resource: what the body is about (its resource key's value).
        :param owner: lease the new delivery to this dispatcher at once (and count
            its first attempt), so that no one else takes it while it runs.
        :param enqueued: a task engine is asked to dispatch it right after the
            commit: stamp ``enqueued_at`` now (see :meth:`take_for_relay`).
        """
        scope = Scope.of(self.name, event, raw, resource)
        values = self._values(
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
                    self._values(key=receivers.key, event=event, receivers=sorted(receivers.names)),
                )
            return self._admit(
                connection,
                self._sql.insert(leased=owner is not None, enqueued=enqueued),
                values,
                scope,
                enqueued,
            )

        admission = self._write(store, deadline)
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
        row = connection.execute(insert, values).one()
        claim = self._values(
            scope=scope.key, delivery_id=row.id, body_hash=scope.body_hash,
            since=-self.duplicate_window,
        )  # fmt: skip
        if connection.execute(self._sql.claim_scope, claim).first() is not None:
            return Admission(_new_delivery(row, values, enqueued=enqueued), new=True)
        # A duplicate: the row just written goes again (inside this transaction).
        connection.execute(self._sql.delete, {"b_id": row.id})
        found = connection.execute(self._sql.in_scope, {"b_scope": scope.key}).one()
        return Admission(Delivery(**found._mapping), new=False)

    def reject(
        self,
        event: str,
        raw: bytes,
        headers: Mapping[str, str],
        errors: dict[str, t.Any],
        *,
        deadline: Deadline | None = None,
    ) -> Delivery:
        """Keep a delivery that failed validation, with its errors, for a later replay.

        The same body refused again for the same reason within the duplicate
        window is the one kept; for another reason, or after the one kept was
        replayed, it is kept anew. Rejected deliveries are bounded by count and
        age (see :meth:`housekeep`).
        """
        scope = Scope.of(self.name, event, raw, None, refusal=errors)
        values = self._values(
            event=event, status="rejected", raw=raw, headers=dict(headers), errors=errors,
            missing=None, receiver_set=None, owner=None, lease=0,
        )  # fmt: skip

        def store(connection: sa.Connection) -> Delivery:
            admission = self._admit(connection, self._sql.rejected, values, scope)
            if admission.new or admission.delivery.status == "rejected":
                return admission.delivery
            # Its twin was replayed since: this refusal is one of its own.
            row = connection.execute(self._sql.rejected, values).one()
            connection.execute(self._sql.rescope, self._values(scope=scope.key, delivery_id=row.id))
            return _new_delivery(row, values, enqueued=False)

        return self._write(store, deadline)

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
        values = self._values(id=delivery_id, owner=owner, lease=lease, sets=list(receivers))
        row = self._write(lambda c: c.execute(statement, values).first(), deadline)
        return None if row is None else Delivery(**row._mapping)

    def repeat(self, delivery_id: int, *, deadline: Deadline | None = None) -> bool:
        """DealPOS sent a failed or dead delivery's body again: make it due now
        (for a dispatcher elsewhere). ``False`` if there was nothing to do."""
        values = self._values(id=delivery_id)
        result = self._write(lambda c: c.execute(self._sql.repeat, values), deadline)
        return bool(result.rowcount)

    def claim_due(self, owner: str, lease: float, receivers: Iterable[str]) -> Delivery | None:
        """Lease the delivery due first, among those whose expected receivers
        are one of the sets ``receivers`` (keys) or unknown (kept from 0.1)."""
        values = self._values(owner=owner, lease=lease, sets=list(receivers))
        row = self._write(lambda c: c.execute(self._sql.claim_due, values).first())
        return None if row is None else Delivery(**row._mapping)

    def extend(self, delivery_id: int, owner: str, lease: float) -> bool:
        """Renew ``owner``'s lease; ``False`` if it was lost to another dispatcher."""
        values = self._values(id=delivery_id, owner=owner, lease=lease)
        result = self._write(lambda c: c.execute(self._sql.extend, values), durable=False)
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
        values = self._values(
            id=delivery.id,
            owner=owner,
            status=status,
            retry_in=retry_in,
            errors=errors,
            outcomes=delivery.outcomes + [o.stored() for o in outcomes],
        )
        result = self._write(lambda c: c.execute(self._sql.finish, values), durable=False)
        return bool(result.rowcount)

    def mark_unsent(self, delivery_ids: Sequence[int]) -> None:
        """Record that the tasks of these deliveries could not be sent, so that
        the relay sends them as soon as it can (not ``requeue_after`` later)."""
        values = self._values(ids=list(delivery_ids))
        self._write(lambda c: c.execute(self._sql.unsent, values), durable=False)

    def take_for_relay(
        self, receivers: Iterable[str], requeue_after: float, limit: int = 500
    ) -> builtins.list[int]:
        """Deliveries a task engine should be asked (again) to dispatch: due,
        held by no dispatcher, with receivers the asking app has, and not sent
        within ``requeue_after`` seconds (a task sent then was lost, or is still
        queued). Each is stamped as sent now, in the same statement, so that
        relays running side by side rarely send one twice (a duplicate task is
        harmless: the first to take the lease runs it).
        """
        values = self._values(sets=list(receivers), requeue_after=-requeue_after, limit=limit)
        rows = self._write(
            lambda c: c.execute(self._sql.take_for_relay, values).all(), durable=False
        )
        return sorted(row.id for row in rows)

    def replay(self, which: Filter) -> int:
        """Make the chosen deliveries due again as replays (:data:`.states.REPLAY`);
        returns how many. Deliveries a dispatcher holds are left alone."""
        statement = (
            deliveries.update()
            .where(D.inbox == B("inbox"), *which.where(), _free(self.clock))
            .values(self._sql.replay_values)
        )
        return self._write(lambda c: c.execute(statement, self._values()).rowcount)

    def hurry(self, which: Filter) -> int:
        """Make the chosen failed deliveries due now instead of after their
        backoff (tests; nothing else changes). Returns how many."""
        statement = (
            deliveries.update()
            .where(D.inbox == B("inbox"), D.status == "failed", *which.where())
            .values(next_attempt_at=self.clock.now())
        )
        return self._write(lambda c: c.execute(statement, self._values()).rowcount)

    # -- receivers -------------------------------------------------------------------

    def receiver_sets(self) -> builtins.list[ReceiverSet]:
        """Every set of receivers an app has stored deliveries for."""
        rows = self._read(sa.select(receiver_sets.c.event, receiver_sets.c.receivers))
        return [ReceiverSet(row.event, frozenset(row.receivers)) for row in rows]

    def waiting_for(self, keys: Iterable[str]) -> dict[str, int]:
        """Due or scheduled deliveries whose receiver set is not one of ``keys``:
        their count per set key."""
        query = (
            sa.select(D.receiver_set, sa.func.count())
            .where(
                D.inbox == B("inbox"),
                D.status.in_(states.DISPATCHABLE),
                D.receiver_set.is_not(None),
                D.receiver_set.not_in(list(keys)),
            )
            .group_by(D.receiver_set)
        )
        rows: t.Iterable[t.Any] = self._read(query, self._values())
        return {key: count for key, count in rows}

    # -- reading ---------------------------------------------------------------------

    def get(self, delivery_id: int) -> Delivery | None:
        """One delivery of this inbox by id.

        .. versionadded:: 0.1
        """
        query = sa.select(deliveries).where(D.inbox == self.name, D.id == delivery_id)
        row = self._read(query).one_or_none()
        return None if row is None else Delivery(**row._mapping)

    def list(
        self, which: Filter | None = None, *, limit: int | None = 50, before: int | None = None
    ) -> builtins.list[Delivery]:
        """Deliveries matching ``which``, newest first.

        :param before: only ids below this (keyset paging: pass the last id seen).

        .. versionadded:: 0.2
        """
        where = [D.inbox == self.name, *(which or Filter()).where()]
        if before is not None:
            where.append(D.id < before)
        query = sa.select(deliveries).where(*where).order_by(D.id.desc()).limit(limit)
        return [Delivery(**row._mapping) for row in self._read(query)]

    def ids(self, which: Filter) -> builtins.list[int]:
        """Ids of the deliveries matching ``which``, oldest first."""
        query = sa.select(D.id).where(D.inbox == self.name, *which.where()).order_by(D.id)
        return list(self._read(query).scalars())

    def counts(self, which: Filter | None = None) -> dict[Status, int]:
        """Number of deliveries per status (every status, zeros included).

        .. versionadded:: 0.1
        """
        where = [D.inbox == self.name, *(which or Filter()).where()]
        query = sa.select(D.status, sa.func.count()).where(*where).group_by(D.status)
        rows: t.Iterable[t.Any] = self._read(query)
        found = {status: count for status, count in rows}
        return {status: found.get(status, 0) for status in states.STATUSES}

    def attempts(self, delivery_id: int) -> builtins.list[Attempt]:
        """Every receiver call of a delivery, oldest first."""
        delivery = self.get(delivery_id)
        return [] if delivery is None else [Attempt.from_stored(o) for o in delivery.outcomes]

    # -- housekeeping ----------------------------------------------------------------

    def housekeep(
        self, retention: Retention, batch: int = 500, batches: int = 20
    ) -> dict[str, int]:
        """Delete finished deliveries past their retention, in bounded batches.

        Only terminal ones (:data:`.states.TERMINAL`): pending and failed
        deliveries are never deleted while they may still run. Rejected ones
        are also trimmed to their count. Each batch is its own short
        transaction, so deliveries arriving meanwhile barely wait.

        :returns: how many were deleted, by status (and ``duplicates`` rows
            past the window).
        """
        ages = {
            "processed": retention.processed,
            "unhandled": retention.processed,
            "dead": retention.dead,
            "rejected": retention.rejected,
        }
        deleted = dict.fromkeys([*ages, "duplicates"], 0)
        for status, age in ages.items():
            old = sa.and_(D.status == status, D.updated_at < self.clock.plus("b_age"))
            deleted[status] += self._delete(old, {"age": -age}, batch, batches)
        deleted["rejected"] += self._trim_rejected(retention.rejected_max_count, batch, batches)
        stale = duplicates.c.seen_at < self.clock.plus("b_since")
        chosen = sa.select(duplicates.c.scope).where(stale).limit(batch).scalar_subquery()
        statement = duplicates.delete().where(duplicates.c.scope.in_(chosen))
        for _ in range(batches):
            done = self._write(
                partial(_execute, statement, self._values(since=-self.duplicate_window))
            )
            deleted["duplicates"] += done
            if done < batch:
                break
        return deleted

    def _delete(
        self, where: sa.ColumnElement[bool], params: dict[str, t.Any], batch: int, batches: int
    ) -> int:
        chosen = sa.select(D.id).where(D.inbox == B("inbox"), where).limit(batch).scalar_subquery()
        statement = deliveries.delete().where(D.id.in_(chosen))
        total = 0
        for _ in range(batches):
            done = self._write(lambda c: c.execute(statement, self._values(**params)).rowcount)
            total += done
            if done < batch:
                break
        return total

    def _trim_rejected(self, keep: int, batch: int, batches: int) -> int:
        newest_dropped = (
            sa.select(D.id)
            .where(D.inbox == B("inbox"), D.status == "rejected")
            .order_by(D.id.desc())
            .offset(keep)
            .limit(1)
            .scalar_subquery()
        )
        return self._delete(
            sa.and_(D.status == "rejected", D.id <= newest_dropped), {}, batch, batches
        )


def _new_delivery(row: sa.Row[t.Any], values: Mapping[str, t.Any], *, enqueued: bool) -> Delivery:
    """The delivery an insert of :class:`_Statements` just wrote: its bound
    ``values``, the constants the insert writes, and what the database returned
    (the id, and times from its clock)."""
    status = values["b_status"]
    leased = values["b_owner"] is not None
    return Delivery(
        id=row.id,
        inbox=values["b_inbox"],
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
        received_at=row.received_at,
        updated_at=row.received_at,
        next_attempt_at=row.received_at if status == "pending" else None,
        locked_by=values["b_owner"],
        locked_until=row.locked_until,
        enqueued_at=row.received_at if enqueued else None,
    )


class _Statements:
    """The inbox's SQL, built once: each execution only binds values."""

    def __init__(self, dialect: sa.Dialect, clock: Clock) -> None:
        now, inbox = clock.now(), B("inbox")
        lease_until = clock.plus("b_lease")
        mine = sa.and_(D.id == B("id"), D.inbox == inbox)
        everything = [*deliveries.c]
        self.register = _register_statement(dialect, now)
        self.claim_scope = claim_statement(dialect, clock)

        def insert(status: Status, leased: bool, enqueued: bool = False) -> sa.Insert:
            # What every new row starts with is written into the SQL, not bound,
            # and only what the database decides comes back (see _new_delivery):
            # this runs under the write lock, once per delivery.
            return (
                deliveries.insert()
                .values(
                    inbox=inbox,
                    event=B("event"),
                    status=sa.literal_column(f"'{status}'", D.status.type),
                    raw=B("raw"),
                    headers=B("headers", type_=D.headers.type),
                    errors=B("errors", type_=D.errors.type) if status == "rejected" else None,
                    missing=B("missing", type_=D.missing.type),
                    receiver_set=B("receiver_set", type_=D.receiver_set.type),
                    outcomes=sa.literal_column("'[]'", D.outcomes.type),
                    attempts=sa.literal_column("1" if leased else "0", D.attempts.type),
                    generation=sa.literal_column("0", D.generation.type),
                    replay=sa.false(),
                    received_at=now,
                    updated_at=now,
                    next_attempt_at=now if status == "pending" else None,
                    locked_by=B("owner", type_=D.locked_by.type) if leased else None,
                    locked_until=lease_until if leased else None,
                    enqueued_at=now if enqueued else None,
                )
                .returning(D.id, D.received_at, D.locked_until)
            )

        self._inserts = {
            (leased, enqueued): insert("pending", leased, enqueued)
            for leased in (False, True)
            for enqueued in (False, True)
        }
        self.rejected = insert("rejected", False)
        self.delete = deliveries.delete().where(D.id == B("id"))
        self.in_scope = (
            sa.select(deliveries)
            .join(duplicates, duplicates.c.delivery_id == D.id)
            .where(duplicates.c.scope == B("scope"))
        )
        self.rescope = rescope_statement(clock)
        take = {
            "locked_by": B("owner"),
            "locked_until": lease_until,
            "attempts": D.attempts + 1,
            "updated_at": now,
        }
        free = _free(clock)
        # Only a dispatcher that has every receiver the delivery expects (or one
        # kept from 0.1, which expects none in particular).
        expected = sa.or_(D.receiver_set.is_(None), D.receiver_set.in_(B("sets", expanding=True)))
        self.claim = (
            deliveries.update()
            .where(mine, D.status.in_(states.DISPATCHABLE), free, expected)
            .values(take)
            .returning(*everything)
        )
        self.claim_repeat = (
            deliveries.update()
            .where(mine, D.status.in_(list(states.REPEAT)), free, expected)
            .values(
                {
                    **take,
                    "status": states.case(states.REPEAT, D.status),
                    # A dead delivery repeated by DealPOS gets a fresh attempt budget.
                    "attempts": sa.case((D.status == "dead", 1), else_=D.attempts + 1),
                }
            )
            .returning(*everything)
        )
        self.repeat = (
            deliveries.update()
            .where(mine, D.status.in_(["failed", "dead"]), free)
            .values(
                status=states.case(states.REPEAT, D.status),
                attempts=sa.case((D.status == "dead", 0), else_=D.attempts),
                next_attempt_at=now,
                updated_at=now,
            )
        )
        # Due now, held by no dispatcher, with receivers the asking app has: what a
        # dispatcher takes next, and what the relay sends tasks for.
        takeable = (
            D.inbox == inbox,
            D.status.in_(states.DISPATCHABLE),
            D.next_attempt_at <= now,
            free,
            expected,
        )
        due = (
            sa.select(D.id)
            .where(*takeable)
            .order_by(D.next_attempt_at, D.id)
            .limit(1)
            # PostgreSQL: concurrent dispatchers pass over a row another one is
            # taking instead of waiting for it. SQLite: the write lock serialises.
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        self.claim_due = deliveries.update().where(D.id == due).values(take).returning(*everything)
        self.extend = (
            deliveries.update()
            .where(mine, D.locked_by == B("owner"))
            .values(locked_until=lease_until)
        )
        self.finish = (
            deliveries.update()
            .where(mine, D.locked_by == B("owner"))
            .values(
                status=B("status"),
                next_attempt_at=clock.plus("b_retry_in"),
                errors=B("errors", type_=D.errors.type),
                outcomes=B("outcomes", type_=D.outcomes.type),
                locked_by=None,
                locked_until=None,
                # The task that carried this attempt is done (Celery mode): the
                # relay sends the next one when the retry is due, not a requeue later.
                enqueued_at=None,
                updated_at=now,
            )
        )
        relayable = (
            sa.select(D.id)
            .where(
                *takeable,
                sa.or_(D.enqueued_at.is_(None), D.enqueued_at < clock.plus("b_requeue_after")),
            )
            .order_by(D.next_attempt_at, D.id)
            .limit(B("limit", type_=sa.Integer(), literal_execute=True))
            .with_for_update(skip_locked=True)
        )
        self.take_for_relay = (
            deliveries.update()
            .where(D.id.in_(relayable.scalar_subquery()))
            .values(enqueued_at=now)
            .returning(D.id)
        )
        self.unsent = (
            deliveries.update()
            .where(D.inbox == inbox, D.id.in_(B("ids", expanding=True)))
            .values(enqueued_at=None)
        )
        self.replay_values = {
            "status": states.case(states.REPLAY, D.status),
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
        return self._inserts[leased, enqueued]


def _register_statement(dialect: sa.Dialect, now: sa.ColumnElement[dt.datetime]) -> sa.Insert:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects import sqlite

    insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(receiver_sets)
    return insert.values(
        key=B("key"),
        event=B("event"),
        receivers=B("receivers", type_=receiver_sets.c.receivers.type),
        first_seen=now,
    ).on_conflict_do_nothing(index_elements=["key"])
