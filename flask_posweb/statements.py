"""The inbox's SQL, built once: each execution only binds values.

SQLAlchemy caches the compiled form of a statement object it sees again;
building ``.values(...)`` anew for every delivery would defeat that.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .database import deliveries
from .exceptions import ConfigurationError
from .prepared import Prepared

__all__ = ["BY_KEY", "D", "FINISH", "REFUSED_AGAIN", "Filter", "RowInsert", "free"]

D = deliveries.c


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which deliveries an operator means (all fields optional, combined with AND)."""

    status: Sequence[str] = ()
    event: Sequence[str] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    ids: Sequence[int] = ()

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
        return clauses


def free(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Not leased by a live dispatcher."""
    return sa.or_(D.locked_until.is_(None), D.locked_until < now)


_ROW_KEYS = [c.name for c in deliveries.c if c.name != "id"]


class RowInsert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the dialect, returning the new
    id, or ``None`` when the duplicate key is stored already."""

    def __init__(self, dialect: sa.Dialect) -> None:
        statement: sa.ClauseElement
        if dialect.name == "sqlite":
            statement = sqlite_insert(deliveries).on_conflict_do_nothing(
                index_elements=["dedup_key"]
            )
        elif dialect.name == "postgresql":
            statement = (
                postgresql_insert(deliveries)
                .on_conflict_do_nothing(index_elements=["dedup_key"])
                .returning(D.id)
            )
        else:
            raise ConfigurationError(
                f"The inbox supports SQLite and PostgreSQL, not {dialect.name!r}: "
                "check POSWEB_DATABASE_URL."
            )
        # SQLite's RETURNING needs 3.35; its cursor tells the new rowid anyway.
        self._returning = dialect.name != "sqlite"
        self._prepared = Prepared(statement, dialect, _ROW_KEYS)

    def __call__(self, connection: sa.Connection, row: dict[str, t.Any]) -> int | None:
        cursor = self._prepared.execute(connection, row)
        if self._returning:
            found = cursor.fetchone()
            return None if found is None else int(found[0])
        return int(cursor.lastrowid) if cursor.rowcount == 1 else None


BY_KEY = sa.select(deliveries).where(D.dedup_key == sa.bindparam("key"))
REFUSED_AGAIN = (
    deliveries.update()
    .where(D.id == sa.bindparam("b_id"))
    .values(errors=sa.bindparam("b_errors", type_=D.errors.type), updated_at=sa.bindparam("b_now"))
)
FINISH = (
    deliveries.update()
    .where(D.id == sa.bindparam("b_id"), D.locked_by == sa.bindparam("b_owner"))
    .values(
        status=sa.bindparam("b_status"),
        next_attempt_at=sa.bindparam("b_next"),
        errors=sa.bindparam("b_errors", type_=D.errors.type),
        answer=sa.bindparam("b_answer", type_=D.answer.type),
        outcomes=sa.bindparam("b_outcomes", type_=D.outcomes.type),
        locked_by=sa.bindparam("b_unlocked", type_=D.locked_by.type),
        locked_until=sa.bindparam("b_unlocked_until", type_=D.locked_until.type),
        updated_at=sa.bindparam("b_now"),
    )
)
