"""Retention: finished deliveries, duplicate scopes and loyalty answers past
their time are deleted, in bounded batches. Part of :class:`~.store.Inbox`.

.. versionadded:: 0.3
    (0.1 and 0.2 kept these in ``store.py``.)
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from .answers import Answers
from .database import Database
from .database import bound
from .records import Retention
from .statements import D
from .tables import deliveries
from .tables import duplicates

__all__ = ["Housekeeping"]


class Housekeeping:
    """The retention side of :class:`~.store.Inbox`."""

    database: Database
    duplicate_window: float
    answers: Answers

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
            old = sa.and_(D.status == status, D.updated_at < self.database.clock.plus("b_age"))
            deleted[status] += self._delete(old, {"age": -age}, batch, batches)
        deleted["rejected"] += self._trim_rejected(retention.rejected_max_count, batch, batches)
        stale = duplicates.c.seen_at < self.database.clock.plus("b_since")
        chosen = sa.select(duplicates.c.scope).where(stale).limit(batch).scalar_subquery()
        statement = duplicates.delete().where(duplicates.c.scope.in_(chosen))
        for _ in range(batches):
            done = self.database.execute(
                statement, self.database.values(since=-self.duplicate_window)
            )
            deleted["duplicates"] += done
            if done < batch:
                break
        deleted["loyalty answers"] = self.answers.housekeep(retention.answers, batch, batches)
        return deleted

    def _delete(
        self, where: sa.ColumnElement[bool], params: dict[str, t.Any], batch: int, batches: int
    ) -> int:
        chosen = (
            sa.select(D.id).where(D.inbox == bound("inbox"), where).limit(batch).scalar_subquery()
        )
        statement = deliveries.delete().where(D.id.in_(chosen))
        total = 0
        for _ in range(batches):
            done = self.database.execute(statement, self.database.values(**params))
            total += done
            if done < batch:
                break
        return total

    def _trim_rejected(self, keep: int, batch: int, batches: int) -> int:
        newest_dropped = (
            sa.select(D.id)
            .where(D.inbox == bound("inbox"), D.status == "rejected")
            .order_by(D.id.desc())
            .offset(keep)
            .limit(1)
            .scalar_subquery()
        )
        return self._delete(
            sa.and_(D.status == "rejected", D.id <= newest_dropped), {}, batch, batches
        )
