"""Which receivers a live dispatcher has, and the deliveries that no live one can take.

A delivery expects the receivers of the app that stored it (its receiver
set, see :class:`~.records.ReceiverSet`), and only a dispatcher that has every
one of them takes it. After a deploy that renamed or removed a receiver, no
dispatcher may have them any more: such deliveries would wait forever. So each
dispatcher says, now and then, which stored sets it has (:meth:`Liveness.beat`:
a set's ``last_seen``), and :meth:`Liveness.strand` marks ``stranded`` the
deliveries due longer than ``POSWEB_STRANDED_AFTER`` whose set no dispatcher
has shown within that time, and makes ``pending`` again those whose set is
live again (a rollback). Where they go is decided in :mod:`.states`
(``STRAND``, ``REVIVE``); an operator adopts the rest for the receivers
deployed now (a replay with ``adopt``, see :meth:`.store.Inbox.replay`).

During a rolling deploy old and new code dispatch side by side: each takes the
deliveries whose receivers it has, and every set stays live, so nothing is
stranded while either version runs.

Part of :class:`~.store.Inbox`.

.. versionadded:: 0.3
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import sqlalchemy as sa

from . import states
from .clock import Clock
from .database import Database
from .database import bound
from .records import Delivery
from .records import Stranding
from .statements import D
from .statements import case
from .statements import free
from .tables import UNUSUAL
from .tables import WAITING
from .tables import deliveries
from .tables import receiver_sets

__all__ = ["Liveness"]

S = receiver_sets.c


class Liveness:
    """The liveness side of :class:`~.store.Inbox`."""

    database: Database

    @functools.cached_property
    def _liveness(self) -> _Statements:
        return _Statements(self.database.clock)

    def beat(self, keys: Iterable[str], every: float) -> int:
        """Record that a live dispatcher has these receiver sets (keys); a set
        seen less than ``every`` seconds ago is left as it is (no write at all
        when each is). Returns how many sets were marked.

        Not durable: a beat lost in a crash is given again at the next one.
        """
        sql, keys = self._liveness, list(keys)
        if not keys:
            return 0
        values = self.database.values(keys=keys, every=-every)
        if not self.database.read(sql.beat_needed, values).first():
            return 0
        return self.database.execute(sql.beat, values, durable=False)

    def unseen_sets(self, after: float) -> list[str]:
        """Keys of the receiver sets no dispatcher has shown within ``after`` seconds."""
        query = self._liveness.unseen
        return list(self.database.read(query, self.database.values(after=-after)).scalars())

    def strand(self, after: float, batch: int = 500) -> Stranding:
        """Mark stranded the deliveries due for longer than ``after`` seconds
        whose receiver set no dispatcher has shown within that time (at most
        ``batch`` of them), and revive the stranded whose set is live again.

        Both are read first (the common case, where every set is live, writes
        nothing), then written with the conditions checked again on the row.
        """
        database, sql = self.database, self._liveness
        unseen = self.unseen_sets(after)
        stranded: list[Delivery] = []
        if unseen:
            values = database.values(sets=unseen, after=-after, limit=batch)
            ids = list(database.read(sql.strandable, values).scalars())
            if ids:

                def mark(connection: sa.Connection) -> list[Delivery]:
                    rows = connection.execute(sql.strand, {**values, "b_ids": ids})
                    return [Delivery(**row._mapping) for row in rows]

                stranded = sorted(database.write(mark), key=lambda d: d.id)
        # An empty list would be "NOT IN ()": a value no key has stands for it.
        values = database.values(sets=unseen or [""])
        revived = 0
        if database.read(sql.revivable, values).first():
            revived = database.execute(sql.revive, values)
        return Stranding(stranded, revived)


class _Statements:
    """The SQL of :class:`Liveness`, built once per inbox."""

    def __init__(self, clock: Clock) -> None:
        now = clock.now()
        chosen = S.key.in_(bound("keys", expanding=True))
        stale = sa.or_(S.last_seen.is_(None), S.last_seen < clock.plus("b_every"))
        self.beat_needed = sa.select(sa.literal(True)).where(chosen, stale).limit(1)
        self.beat = receiver_sets.update().where(chosen, stale).values(last_seen=now)
        unseen = sa.or_(S.last_seen.is_(None), S.last_seen < clock.plus("b_after"))
        self.unseen = sa.select(S.key).where(unseen)
        waiting = sa.and_(
            D.inbox == bound("inbox"),
            WAITING,
            D.next_attempt_at < clock.plus("b_after"),
            free(clock),
            D.receiver_set.in_(bound("sets", expanding=True)),
        )
        limit = bound("limit", type_=sa.Integer(), literal_execute=True)
        self.strandable = sa.select(D.id).where(waiting).order_by(D.id).limit(limit)
        self.strand = (
            deliveries.update()
            .where(waiting, D.id.in_(bound("ids", expanding=True)))
            .values(status=case(states.STRAND, D.status), updated_at=now)
            .returning(*deliveries.c)
        )
        revivable = sa.and_(
            D.inbox == bound("inbox"),
            UNUSUAL,  # said, for the index of the unusual statuses
            D.status.in_(list(states.REVIVE)),
            D.receiver_set.is_not(None),
            D.receiver_set.not_in(bound("sets", expanding=True)),
        )
        self.revivable = sa.select(sa.literal(True)).where(revivable).limit(1)
        self.revive = (
            deliveries.update()
            .where(revivable)
            .values(status=case(states.REVIVE, D.status), next_attempt_at=now, updated_at=now)
        )
