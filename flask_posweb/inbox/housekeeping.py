"""Retention: finished deliveries, duplicate scopes and loyalty answers past
their time are deleted, in bounded batches. Part of :class:`~.store.Inbox`.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``store.py``.)
"""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa

from .answers import Answers
from .database import Database
from .database import bound
from .records import Retention
from .statements import D
from .tables import FINISHED
from .tables import UNUSUAL
from .tables import deliveries
from .tables import duplicates

__all__ = ["STATISTICS_AGE", "Housekeeping"]

U = duplicates.c

#: Seconds between two refreshes of the query planner's statistics.
STATISTICS_AGE = 3600.0


class Housekeeping:
    """The retention side of :class:`~.store.Inbox`."""

    database: Database
    duplicate_window: float
    answers: Answers
    #: When this inbox last refreshed the planner's statistics (monotonic).
    _analyzed_at = -STATISTICS_AGE

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
            past the window, and remembered ``loyalty answers`` past theirs).
        """
        ages = {
            "processed": retention.processed,
            "unhandled": retention.processed,
            "dead": retention.dead,
            "rejected": retention.rejected,
        }
        deleted = dict.fromkeys([*ages, "duplicates", "loyalty answers"], 0)
        for status, age in ages.items():
            old = sa.and_(
                FINISHED,  # said, for the partial index of the finished
                D.status == status,
                D.updated_at < self.database.clock.plus("b_age"),
            )
            deleted[status] += self._delete(old, {"age": -age}, batch, batches)
        deleted["rejected"] += self._trim_rejected(retention.rejected_max_count, batch, batches)
        deleted["duplicates"] = self._forget_scopes(batch, batches)
        deleted["loyalty answers"] = self.answers.housekeep(retention.answers, batch, batches)
        self._refresh_statistics()
        return deleted

    def _forget_scopes(self, batch: int, batches: int) -> int:
        """Delete the duplicate scopes past the window, oldest first.

        A scope takes its delivery's id and time together, so scopes age in
        the order of their ids: the oldest are found by the index that ``ON
        DELETE CASCADE`` needs anyway, and no index of times is kept for this.
        """
        stale = U.seen_at < self.database.clock.plus("b_since")
        oldest = sa.select(U.scope).order_by(U.delivery_id).limit(batch).scalar_subquery()
        return self.database.delete_batches(
            duplicates.delete().where(U.scope.in_(oldest), stale),
            self.database.values(since=-self.duplicate_window),
            pending=sa.select(stale).order_by(U.delivery_id).limit(1),
            batch=batch,
            batches=batches,
        )

    def _refresh_statistics(self) -> None:
        """Now and then, the planner's statistics (see :meth:`.Database.analyze`)."""
        if time.monotonic() - self._analyzed_at >= STATISTICS_AGE:
            self.database.analyze()
            self._analyzed_at = time.monotonic()

    def _delete(
        self, where: sa.ColumnElement[bool], params: dict[str, t.Any], batch: int, batches: int
    ) -> int:
        chosen = sa.select(D.id).where(D.inbox == bound("inbox"), where)
        return self.database.delete_batches(
            deliveries.delete().where(D.id.in_(chosen.limit(batch).scalar_subquery())),
            self.database.values(**params),
            pending=sa.select(sa.literal(True)).where(D.id.in_(chosen.limit(1).scalar_subquery())),
            batch=batch,
            batches=batches,
        )

    def _trim_rejected(self, keep: int, batch: int, batches: int) -> int:
        newest_dropped = (
            sa.select(D.id)
            .where(D.inbox == bound("inbox"), UNUSUAL, D.status == "rejected")
            .order_by(D.id.desc())
            .offset(keep)
            .limit(1)
            .scalar_subquery()
        )
        return self._delete(
            sa.and_(UNUSUAL, D.status == "rejected", D.id <= newest_dropped), {}, batch, batches
        )
