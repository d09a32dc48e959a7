"""Where "now" comes from in the inbox's SQL.

Leases and the duplicate window compare times written by different
processes, maybe on different machines. On PostgreSQL every such time is the
server's own clock (``now()``), so clock skew between app servers changes
nothing. SQLite's clock is this machine's anyway: there, and in tests that
move time by hand, "now" is a value bound to each statement.

.. versionadded:: 0.2
"""

from __future__ import annotations

import datetime as dt
import typing as t
from collections.abc import Callable

import sqlalchemy as sa

from .records import utcnow

__all__ = ["Clock"]


class Clock:
    """Builds time expressions for statements, and binds their values.

    :param dialect: the inbox's dialect name.
    :param now: returns naive UTC now; given (tests), every time is bound from it.
    """

    def __init__(self, dialect: str, now: Callable[[], dt.datetime] | None = None) -> None:
        self.server = now is None and dialect == "postgresql"
        self._now = now or utcnow
        self._shifts: set[str] = set()

    def now(self) -> sa.ColumnElement[dt.datetime]:
        """Now, in a statement."""
        if self.server:
            return sa.func.timezone("UTC", sa.func.now(), type_=sa.DateTime())
        return sa.bindparam("now", type_=sa.DateTime())

    def plus(self, name: str) -> sa.ColumnElement[dt.datetime]:
        """Now plus the seconds bound as ``name`` (negative for the past)."""
        if self.server:
            seconds = sa.bindparam(name, type_=sa.Float())
            return self.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)
        self._shifts.add(name)
        return sa.bindparam(f"{name}__at", type_=sa.DateTime())

    def bind(self, values: dict[str, t.Any]) -> dict[str, t.Any]:
        """``values`` plus the times the statements built here need."""
        if self.server:
            return values
        now = self._now()
        values["now"] = now
        for name in self._shifts:
            if name in values:
                seconds = values[name]
                values[f"{name}__at"] = (
                    None if seconds is None else now + dt.timedelta(seconds=seconds)
                )
        return values

    def python_now(self) -> dt.datetime:
        """This process's idea of now (for messages and command-line filters)."""
        return self._now()
