"""Reading the inbox: one delivery, lists, counts, and the receiver sets stored.

Reads are snapshots on their own connections: they never wait for a writer.
Part of :class:`~.store.Inbox`.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``store.py``.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
import warnings
from collections.abc import Iterable

import sqlalchemy as sa

from .database import Database
from .database import bound
from .filters import Filter
from .records import Attempt
from .records import Backlog
from .records import Delivery
from .records import MerchantSummary
from .records import ReceiverSet
from .statements import D
from .statements import where
from .states import STATUSES
from .states import Status
from .tables import UNUSUAL
from .tables import WAITING
from .tables import deliveries
from .tables import receiver_sets

__all__ = ["Reading"]


class Reading:
    """The read side of :class:`~.store.Inbox`."""

    database: Database

    # -- receivers -------------------------------------------------------------------

    def receiver_sets(self) -> list[ReceiverSet]:
        """Every set of receivers an app has stored deliveries for."""
        rows = self.database.read(sa.select(receiver_sets.c.event, receiver_sets.c.receivers))
        return [ReceiverSet(row.event, frozenset(row.receivers)) for row in rows]

    def waiting_for(self, keys: Iterable[str]) -> dict[str, int]:
        """Due or scheduled deliveries whose receiver set is not one of ``keys``:
        their count per set key."""
        query = (
            sa.select(D.receiver_set, sa.func.count())
            .where(
                D.inbox == bound("inbox"),
                WAITING,
                D.receiver_set.is_not(None),
                D.receiver_set.not_in(list(keys)),
            )
            .group_by(D.receiver_set)
        )
        rows: t.Iterable[t.Any] = self.database.read(query, self.database.values())
        return {key: count for key, count in rows}

    # -- reading ---------------------------------------------------------------------

    def get(self, delivery_id: int) -> Delivery | None:
        """One delivery of this inbox by id.

        .. versionadded:: 0.1
        """
        query = sa.select(deliveries).where(D.inbox == self.database.name, D.id == delivery_id)
        row = self.database.read(query).one_or_none()
        return None if row is None else Delivery(**row._mapping)

    def deliveries(
        self, which: Filter | None = None, *, limit: int | None = 50, before: int | None = None
    ) -> list[Delivery]:
        """Deliveries matching ``which``, newest first.

        :param before: only ids below this (keyset paging: pass the last id seen).

        .. versionadded:: 0.3
            (0.2 called it ``list``, which stays as a deprecated alias.)
        """
        clauses = [D.inbox == self.database.name, *where(which or Filter())]
        if before is not None:
            clauses.append(D.id < before)
        query = sa.select(deliveries).where(*clauses).order_by(D.id.desc()).limit(limit)
        return [Delivery(**row._mapping) for row in self.database.read(query)]

    def ids(self, which: Filter) -> list[int]:
        """Ids of the deliveries matching ``which``, oldest first."""
        query = sa.select(D.id).where(D.inbox == self.database.name, *where(which)).order_by(D.id)
        return list(self.database.read(query).scalars())

    def counts(self, which: Filter | None = None) -> dict[Status, int]:
        """Number of deliveries per status (every status, zeros included).

        .. versionadded:: 0.1
        """
        tally = self._tally(which or Filter())
        return {status: sum(counts[status] for counts in tally.values()) for status in STATUSES}

    def merchants(self, which: Filter | None = None) -> list[MerchantSummary]:
        """Every merchant with stored deliveries (``None``: the app's own), with
        its counts per status and when its oldest waiting delivery arrived;
        the merchant waiting longest first.

        .. versionadded:: 0.3
        """
        which = which or Filter()
        oldest = self._oldest_waiting(which)
        found = [
            MerchantSummary(merchant or None, counts, oldest.get(merchant))
            for merchant, counts in self._tally(which).items()
        ]
        return sorted(
            found,
            key=lambda s: (
                s.oldest_waiting is None,
                s.oldest_waiting or dt.datetime.min,
                s.merchant or "",
            ),
        )

    def _tally(self, which: Filter) -> dict[str, dict[Status, int]]:
        """Deliveries per merchant and status, read from indexes, not rows: all
        but the processed from their own index, and the processed as the rest
        of each merchant's total. One statement: one snapshot for both."""
        clauses = [D.inbox == self.database.name, *where(dataclasses.replace(which, status=()))]
        total = sa.literal_column("'*'", D.status.type)
        query = sa.union_all(
            sa.select(D.merchant, D.status, sa.func.count())
            .where(*clauses, UNUSUAL)
            .group_by(D.merchant, D.status),
            sa.select(D.merchant, total, sa.func.count()).where(*clauses).group_by(D.merchant),
        )
        tally: dict[str, dict[Status, int]] = {}
        rows: t.Iterable[t.Any] = self.database.read(query)
        for merchant, status, count in rows:
            counts = tally.setdefault(merchant, dict.fromkeys(STATUSES, 0))
            if status == "*":
                counts["processed"] += count
            else:
                counts[status] += count
                counts["processed"] -= count
        wanted = set(which.status or STATUSES)
        for counts in tally.values():
            for status in STATUSES:
                if status not in wanted:
                    counts[status] = 0
        return {merchant: counts for merchant, counts in tally.items() if any(counts.values())}

    def _oldest_waiting(self, which: Filter) -> dict[str, dt.datetime]:
        """When each merchant's oldest waiting delivery arrived (the lowest id:
        found in the index of the waiting, then one row per merchant read)."""
        clauses = [D.inbox == self.database.name, *where(dataclasses.replace(which, status=()))]
        first = (
            sa.select(sa.func.min(D.id).label("id"))
            .where(*clauses, WAITING)
            .group_by(D.merchant)
            .subquery()
        )
        query = sa.select(D.merchant, D.received_at).join(first, D.id == first.c.id)
        rows: t.Iterable[t.Any] = self.database.read(query)
        return {merchant: received_at for merchant, received_at in rows}

    def backlog(self) -> Backlog:
        """What waits in this inbox, in one statement (one snapshot), read from
        the index of the waiting and the one of the unusual statuses.

        .. versionadded:: 0.3
        """
        inbox, now = D.inbox == self.database.name, self.database.clock.now()
        due = D.next_attempt_at <= now
        waiting = sa.select(
            sa.func.count(),
            sa.func.count().filter(due),
            sa.func.min(D.next_attempt_at).filter(due),
        ).where(inbox, WAITING)
        dead = sa.select(sa.func.count()).where(inbox, UNUSUAL, D.status == "dead")
        row = self.database.read(
            sa.select(*waiting.subquery().c, dead.scalar_subquery())
        ).one()
        return Backlog._make(row)

    def attempts(self, delivery_id: int) -> list[Attempt]:
        """Every receiver call of a delivery, oldest first."""
        delivery = self.get(delivery_id)
        return [] if delivery is None else [Attempt.from_stored(o) for o in delivery.outcomes]


def _list(self: Reading, *args: t.Any, **kwargs: t.Any) -> list[Delivery]:
    """Deprecated alias of :meth:`~flask_posweb.Inbox.deliveries`.

    .. deprecated:: 0.3
        Use ``deliveries``; ``list`` will be removed in 0.4.
    """
    warnings.warn(
        "Inbox.list is deprecated and will be removed in Flask-PosWeb 0.4; use Inbox.deliveries.",
        DeprecationWarning,
        stacklevel=2,
    )
    return self.deliveries(*args, **kwargs)


# Set after the class: a method named ``list`` would shadow the builtin in its body.
setattr(Reading, "list", _list)  # noqa: B010
