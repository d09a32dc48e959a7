"""One inbox's database: its engines, its writer, its clock, and what a failure means.

Every part of the store (deliveries, duplicates, housekeeping, loyalty
answers) reads and writes through :class:`Database`: writes go through the
writer (one wait, one deadline, see :mod:`.writer`), reads through plain
connections, and every database failure becomes a :class:`~flask_posweb.StoreError`,
which the edge answers with a 503 (DealPOS retries). Every statement goes
through SQLAlchemy: ``echo``, SQL events and tracing see them all.

.. versionadded:: 0.3
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import tempfile
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping

import sqlalchemy as sa

from ..exceptions import StoreError
from .clock import Clock
from .deadline import Deadline
from .engines import Engines
from .engines import create_engines
from .engines import driver_reason
from .migrations import VERSION_TABLE
from .migrations import Layout
from .migrations import head
from .writer import Done
from .writer import create_writer

__all__ = ["Database", "bound"]

logger = logging.getLogger("flask_posweb")

R = t.TypeVar("R")


def bound(name: str, **kwargs: t.Any) -> sa.BindParameter[t.Any]:
    """A bound value of a statement built once, named ``b_<name>`` (see
    :meth:`Database.values`: SQLAlchemy reserves the columns' own names)."""
    return sa.bindparam(f"b_{name}", **kwargs)


#: Index entries SQLite's ``ANALYZE`` reads, about, from each index.
ANALYSIS_LIMIT = 100_000


class Database:
    """The database of one inbox (``POSWEB_INBOX_NAME``), shared by every part of the store.

    :param engines: see :func:`~.engines.create_engines`.
    :param name: ``POSWEB_INBOX_NAME``: this inbox's rows, among others in the database.
    :param timeout: ``POSWEB_DATABASE_TIMEOUT``: the longest a write waits in all.
    :param clock: returns naive UTC now; tests pass their own. By default
        PostgreSQL's own clock is used in SQL.
    """

    def __init__(
        self,
        engines: Engines,
        *,
        name: str = "default",
        timeout: float = 5,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engines = engines
        self.name = name
        self.timeout = timeout
        self.clock = Clock(engines.dialect.name, clock)
        self.writer = create_writer(engines)
        # Layout changes wait longer than a request would: they run once, by hand.
        self.layout = Layout(
            engines, lambda change: self.writer.write(change, Deadline(max(timeout, 60)))
        )
        self._scratch: str | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5, **kwargs: t.Any) -> Database:
        """The database at a URL. Nothing is connected until first use, so an
        app starts while its database is down.

        An in-memory SQLite URL (``sqlite://``) gives a private database in a
        temporary file, removed by :meth:`close`: several connections (and
        threads) must see one database.
        """
        scratch = None
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            scratch = tempfile.mkdtemp(prefix="posweb-")
            url = "sqlite:///" + os.path.join(scratch, "inbox.sqlite3")
        database = cls(create_engines(url, timeout), timeout=timeout, **kwargs)
        database._scratch = scratch
        if scratch is not None:  # an app that is never closed leaves no file behind
            weakref.finalize(database, shutil.rmtree, scratch, True)
        return database

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engines.dialect.name

    def close(self) -> None:
        """Close every connection (they are opened again when needed)."""
        self.writer.close()
        self.engines.dispose()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @contextlib.contextmanager
    def translated(self, *, current: bool = True) -> Iterator[None]:
        """Database failures as :class:`~flask_posweb.StoreError`: the caller answers 503.

        :param current: the layout must be current first (all but the migrations).
        """
        try:
            if current:
                self.layout.ensure()
            yield
        except StoreError:
            raise
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            # Locked, read-only, disk full, server down: DealPOS should retry.
            cause = getattr(exc, "orig", None) or exc
            # The log says which (a refused password, a full disk); the answer does not.
            reason = driver_reason(exc)
            logger.warning("The inbox is unavailable: %s", reason)
            if self.dialect == "sqlite":
                # SQLite shares a file's state among every connection of the
                # process: one pooled reader opened while the folder was
                # read-only keeps a read-only shared memory that fails every
                # later write, even once the folder is writable again. Start
                # over with new connections (PostgreSQL's pool pings instead).
                self.engines.dispose()
            raise StoreError(f"The inbox is unavailable ({type(cause).__name__}).", reason) from exc

    # -- the layout ------------------------------------------------------------------

    def revision(self) -> str | None:
        """The store's layout revision (``None``: no tables yet). A connection
        found dead (a restarted server) is replaced, and it is read once more,
        as :meth:`read` does: a probe must not fail on a connection the pool kept."""
        with self.translated(current=False):
            try:
                return self.layout.current()
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return self.layout.current()

    def head(self) -> str:
        """The revision this code needs."""
        return head()

    def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate the store to ``revision`` (data kept); returns (before, after)."""
        with self.translated(current=False):
            return self.layout.upgrade(revision)

    def downgrade(self, revision: str) -> tuple[str | None, str | None]:
        """Migrate the store back to ``revision``; returns (before, after)."""
        with self.translated(current=False):
            return self.layout.downgrade(revision)

    # -- statements ------------------------------------------------------------------

    def write(
        self,
        operation: Callable[[sa.Connection], R],
        deadline: Deadline | None = None,
        *,
        durable: bool = True,
    ) -> R:
        """Run ``operation`` in a write transaction; its result once committed.

        :param deadline: the request's (default: ``timeout`` from now).
        :param durable: ``False`` for writes whose loss in a crash costs a
            repeat, never a delivery (a receiver's outcome).
        :raises StoreError: it could not be committed in time.
        """
        with self.translated():
            return self.writer.write(operation, deadline or Deadline(self.timeout), durable=durable)

    def touch(self, deadline: Deadline | None = None) -> None:
        """Commit a write that changes nothing, yet takes the write lock and
        commits as a delivery does (the layout of an empty database is made
        first, as by any first write): whether the store takes writes now.

        :raises StoreError: it does not.
        """
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        touch = sa.update(version).values(version_num=version.c.version_num)
        self.write(lambda connection: connection.execute(touch), deadline)

    def execute(
        self,
        statement: sa.Executable,
        values: Mapping[str, t.Any],
        deadline: Deadline | None = None,
        *,
        durable: bool = True,
    ) -> int:
        """Run one write statement; how many rows it changed."""

        def run(connection: sa.Connection) -> int:
            return int(connection.execute(statement, values).rowcount)

        return self.write(run, deadline, durable=durable)

    def write_later(self, operation: Callable[[sa.Connection], R], done: Done) -> None:
        """Queue a write nobody waits for (a receiver's outcome): committed with
        the next write of this process, or by :meth:`flush`; ``done(result,
        error)`` is then called, in the committing thread. Losing it to a crash
        costs a repeat, never a delivery."""
        self.writer.write_later(operation, done)

    def flush(self) -> None:
        """Commit the writes queued by :meth:`write_later`, if any."""
        if self.writer.waiting:
            with self.translated():
                self.writer.flush(Deadline(self.timeout))

    def delete_batches(
        self,
        statement: sa.Delete,
        values: Mapping[str, t.Any],
        *,
        pending: sa.Select[t.Any],
        batch: int,
        batches: int,
    ) -> int:
        """Run ``statement``, which deletes at most ``batch`` rows, until it
        deletes fewer (at most ``batches`` times); how many it deleted.

        Each run is its own short transaction, so that writes arriving
        meanwhile barely wait. ``pending`` is read first (a snapshot, no lock):
        when its first value is not true there is nothing to delete, and no
        turn at the lock is taken for nothing.
        """
        if not self.read(pending, values).scalar():
            return 0
        total = 0
        for _ in range(batches):
            done = self.execute(statement, values)
            total += done
            if done < batch:
                break
        return total

    def analyze(self) -> None:
        """Refresh the query planner's statistics (SQLite; PostgreSQL's autovacuum
        keeps its own).

        SQLite has none until ``ANALYZE`` runs, and without them it guesses
        how many rows a key matches: one event's counts on the log page then
        read every row of the event rather than the few an index of the
        unusual statuses holds. A sample of each index is enough: it bounds the
        time the lock is held, whatever the size of the inbox (some 50 ms here),
        and it is large enough to tell a key that matches a hundred thousand
        rows from one that matches a thousand.
        """
        if self.dialect != "sqlite":
            return

        def run(connection: sa.Connection) -> None:
            connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
            connection.exec_driver_sql("ANALYZE")

        self.write(run)
        # Read connections load statistics when they open.
        self.engines.read.dispose()

    def read(
        self, query: sa.Executable, params: Mapping[str, t.Any] | None = None
    ) -> sa.Result[t.Any]:
        """Run a query on a read connection (a snapshot: it never waits for a
        writer). A connection found dead is replaced, and the query run once more."""
        values = self.clock.bind(dict(params or {}))
        with self.translated():
            try:
                return self._read(query, values)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return self._read(query, values)  # once more, on a new connection

    def _read(self, query: sa.Executable, values: dict[str, t.Any]) -> sa.Result[t.Any]:
        with self.engines.read.connect() as connection:
            return connection.execute(query, values).freeze()()

    def values(self, **values: t.Any) -> dict[str, t.Any]:
        """The values of a statement built with :func:`bound`: every name gets
        ``b_``, this inbox's name is ``b_inbox``, and the clock's times are bound."""
        prefixed = {f"b_{name}": value for name, value in values.items()}
        prefixed["b_inbox"] = self.name
        return self.clock.bind(prefixed)
