"""The inbox's engines: how it connects to SQLite or PostgreSQL.

SQLite is the zero-configuration default (a file in the app's instance folder);
PostgreSQL lets many web nodes and workers share one inbox.

Each inbox uses three engines on one database, each configured once, when it
connects (no setting is switched per transaction):

- ``read``: plain connections. On SQLite in WAL mode a read is a snapshot that
  never waits for a writer; on PostgreSQL, READ COMMITTED.
- ``durable``: writes whose commit is on disk before it returns (a delivery,
  before its 200): SQLite ``synchronous=FULL``; PostgreSQL's default.
- ``relaxed``: writes whose loss in a crash costs a repeat, never a delivery
  (a receiver's outcome: at worst it runs again): SQLite ``synchronous=NORMAL``
  (in WAL mode, durable at the next full sync or checkpoint); PostgreSQL
  ``synchronous_commit=off``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import time
import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..exceptions import ConfigurationError
from .deadline import StoreBusyError

__all__ = ["DEADLINE", "SUPPORTED", "Engines", "create_engines", "driver_reason", "sqlite_path"]

#: Key of a write's :class:`~.deadline.Deadline` in its connection's ``info``: what
#: SQLite's ``BEGIN IMMEDIATE`` waits by (see :mod:`.writer`).
DEADLINE = "posweb_deadline"
#: SQLite's own busy wait for the writers' connections, in seconds: short, since
#: the writer tries again by the request's deadline, which SQLite does not know.
SQLITE_BUSY_WAIT = 0.005


@dataclasses.dataclass(frozen=True)
class Engines:
    """The three engines of one inbox (see the module docstring)."""

    read: sa.Engine
    durable: sa.Engine
    relaxed: sa.Engine
    #: ``POSWEB_DATABASE_TIMEOUT``: what the connections' own timeouts are set to.
    timeout: float

    @property
    def dialect(self) -> sa.Dialect:
        return self.read.dialect

    def dispose(self) -> None:
        for engine in {self.read, self.durable, self.relaxed}:
            engine.dispose()


SUPPORTED = "'sqlite:///path' or 'postgresql://user:password@host/database'"


def create_engines(url: str, timeout: float) -> Engines:
    """The engines of the inbox at ``url``.

    :param timeout: seconds a statement may wait for a lock (the whole wait of a
        request is bounded by the caller, see :mod:`.writer`).
    :raises ConfigurationError: a database other than SQLite or PostgreSQL, or
        PostgreSQL without its driver.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engines = _sqlite(parsed, timeout)
    elif backend == "postgresql":
        engines = _postgresql(parsed, timeout)
    else:
        raise ConfigurationError(
            f"POSWEB_DATABASE_URL names a {backend!r} database; the inbox supports "
            f"SQLite and PostgreSQL: {SUPPORTED}."
        )
    for engine in {engines.read, engines.durable, engines.relaxed}:
        _dispose_after_fork(engine)
    return engines


def driver_reason(exc: BaseException) -> str:
    """Why the database failed, in the driver's own words (``OperationalError:
    unable to open database file``): its first line, never SQLAlchemy's text,
    which repeats the statement and its values."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    return f"{type(cause).__name__}: {first}"


def sqlite_path(url: sa.URL) -> str:
    """The file of an SQLite URL (``file:`` URIs included)."""
    database = url.database or ""
    return database.removeprefix("file:").split("?", 1)[0]


def _sqlite(url: sa.URL, timeout: float) -> Engines:
    folder = os.path.dirname(os.path.abspath(sqlite_path(url)))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        pass  # a read-only folder: the first write answers 503, not the app's start

    def engine(synchronous: str | None) -> sa.Engine:
        busy = timeout if synchronous is None else SQLITE_BUSY_WAIT
        created = sa.create_engine(url, connect_args={"timeout": busy, "check_same_thread": False})

        @sa.event.listens_for(created, "connect")
        def _configure(dbapi_connection: t.Any, _record: t.Any) -> None:
            cursor = dbapi_connection.cursor()
            _wal(cursor, timeout)
            cursor.execute("PRAGMA foreign_keys=ON")
            if synchronous is not None:
                cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()
            if synchronous is not None:
                # A writer: the driver's own deferred BEGIN is replaced by
                # BEGIN IMMEDIATE (below), which takes SQLite's write lock at once.
                dbapi_connection.isolation_level = None

        if synchronous is not None:

            @sa.event.listens_for(created, "begin")
            def _begin(connection: sa.Connection) -> None:
                _begin_immediate(connection, connection.info.get(DEADLINE), timeout)

        return created

    return Engines(
        read=engine(None), durable=engine("FULL"), relaxed=engine("NORMAL"), timeout=timeout
    )


def _begin_immediate(connection: sa.Connection, deadline: t.Any, timeout: float) -> None:
    """Take SQLite's write lock, trying again while another connection has it
    (not one of ours: they take the lock file first), until the write's
    deadline. Through SQLAlchemy, so that SQL events and ``echo`` see it."""
    until = deadline.at if deadline is not None else time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as exc:
            left = until - time.monotonic()
            if "locked" not in str(exc.orig):
                raise
            if left <= 0:
                raise StoreBusyError() from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.02)


def _wal(cursor: t.Any, timeout: float) -> None:
    """WAL mode: readers never block the writer, nor it them.

    The mode is kept in the file, so only the first connection to a new
    database switches it, and that takes an exclusive lock for which SQLite
    does not wait: processes starting together (gunicorn workers) try again.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _postgresql(url: sa.URL, timeout: float) -> Engines:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3: the 'postgresql' extra
    millis = int(timeout * 1000)
    # A write's own deadline is set per transaction when it differs (see writer.py);
    # reads (the log page's counts) may take longer.
    options = f"-c lock_timeout={millis} -c TimeZone=UTC"

    def engine(extra: str) -> sa.Engine:
        try:
            # No ping per checkout: the writers keep their connection, and a
            # dead one (a restarted server) is replaced and the write tried
            # once more (writer.py), as reads are (database.py).
            return sa.create_engine(
                url,
                pool_timeout=timeout,
                connect_args={
                    "options": options + extra,
                    "connect_timeout": max(1, math.ceil(timeout)),
                },
            )
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"A PostgreSQL inbox needs its driver ({exc.name}): "
                "pip install 'Flask-PosWeb[postgresql]'."
            ) from None

    writes = f" -c statement_timeout={millis}"
    return Engines(
        read=engine(f" -c statement_timeout={millis * 6}"),
        durable=engine(writes),
        relaxed=engine(writes + " -c synchronous_commit=off"),
        timeout=timeout,
    )


def _dispose_after_fork(engine: sa.Engine) -> None:
    """Give a forked child (a gunicorn worker) its own connections.

    Pooled connections inherited from the parent must not be used by both
    processes; ``close=False`` leaves them to the parent (SQLAlchemy's recipe).
    """
    ref = weakref.ref(engine)

    def _reset() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=_reset)
