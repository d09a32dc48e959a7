"""The inbox's tables and engine: SQLAlchemy Core, one schema for SQLite and PostgreSQL.

SQLite is the zero-configuration default (a file in the app's instance folder)
and is tuned here for several web processes writing at once; PostgreSQL lets
many web nodes and workers share one inbox.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import typing as t
import weakref

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = ["Writer", "create_engine", "create_tables", "deliveries", "metadata"]

metadata = sa.MetaData()

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias

#: One row per delivery (and per loyalty call remembered for idempotency).
deliveries = sa.Table(
    "posweb_deliveries",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(80), nullable=False),
    # Event name + SHA-256 of the raw body: DealPOS sends no delivery id. The
    # unique index makes "insert unless seen" one atomic statement.
    sa.Column("dedup_key", sa.String(160), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.Column("errors", sa.JSON(), nullable=True),
    sa.Column("answer", sa.JSON(), nullable=True),
    # Every receiver call, oldest first (see inbox.Attempt): kept in the row, so
    # that recording a dispatch is one UPDATE and reading it no extra query.
    sa.Column("outcomes", sa.JSON(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    # Bumped by a replay of a processed delivery: receivers' earlier successes
    # belong to the previous generation and no longer count.
    sa.Column("generation", sa.Integer(), nullable=False, default=0),
    sa.Column("replay", sa.Boolean(), nullable=False, default=False),
    sa.Column("received_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    sa.Index("ix_posweb_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_posweb_deliveries_received", "received_at"),
)


def create_engine(url: str, timeout: float) -> sa.Engine:
    """An engine for the inbox at ``url``, tuned for its dialect.

    ``postgresql://`` URLs use psycopg 3 (the ``postgresql`` extra).

    :param timeout: seconds a statement may wait for a lock before failing.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, timeout)
    else:
        millis = int(timeout * 1000)
        engine = sa.create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"options": f"-c lock_timeout={millis} -c statement_timeout={millis * 6}"},
        )

        @sa.event.listens_for(engine, "begin")
        def _relaxed(connection: sa.Connection) -> None:
            if not connection.get_execution_options().get("posweb_durable", True):
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    _dispose_after_fork(engine)
    return engine


def _sqlite_engine(url: sa.URL, timeout: float) -> sa.Engine:
    memory = url.database in (None, "", ":memory:")
    if not memory and url.database:
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False},
        # One shared connection for an in-memory database, or each connection
        # would see its own empty database.
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: t.Any, _record: t.Any) -> None:
        # The driver's own transaction handling would issue a deferred BEGIN;
        # we issue BEGIN IMMEDIATE ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer. FULL: a commit is on disk before
        # we answer 200. busy_timeout: wait for the write lock, then fail (503).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # per transaction: see _begin
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # FULL syncs each commit to disk before it returns; NORMAL (in WAL mode)
        # defers that to the next FULL commit or checkpoint: a crash may lose the
        # last such commits, never corrupt the file. See Inbox._write.
        durable = connection.get_execution_options().get("posweb_durable", True)
        info = connection.connection.info
        if info.get("posweb_durable") != durable:
            connection.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            info["posweb_durable"] = durable
        # Take the write lock at BEGIN: a deferred transaction that reads, then
        # writes, fails at once with SQLITE_BUSY when another process wrote in
        # between, instead of waiting for busy_timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


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


class Writer:
    """Where every write transaction of one inbox happens: one at a time per
    process and, on SQLite, per database file across processes, on a connection
    kept open (checking one out of the pool per write is measurable).

    SQLite lets one writer in at a time and makes the others poll, sleeping 1
    to 100 ms between tries: under several processes that sleep, not the disk,
    caps throughput. Writers wait on a lock file (``flock``) instead, and the
    next one goes in as soon as the previous one commits.

    :param timeout: seconds to wait for the lock before failing (a 503).
    """

    def __init__(self, engine: sa.Engine, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self._lock = threading.Lock()
        self._file_lock = _FileLock.for_engine(engine, timeout)
        self._connection: sa.Connection | None = None
        self._pid = -1

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> t.Iterator[sa.Connection]:
        """A write transaction, committed on exit (see ``Inbox._write`` for ``durable``)."""
        if not self._lock.acquire(timeout=self.timeout):
            raise _locked()
        try:
            with self._file_lock.hold() if self._file_lock else contextlib.nullcontext():
                connection = self._connect()
                connection.execution_options(posweb_durable=durable)
                try:
                    with connection.begin():
                        yield connection
                except BaseException:
                    self.close()  # whatever failed may have left it unusable
                    raise
        finally:
            self._lock.release()

    def _connect(self) -> sa.Connection:
        if self._pid != os.getpid():
            # A forked child must not touch its parent's connection, not even
            # to close it: forget it and open its own.
            self._connection, self._pid = None, os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        return self._connection

    def close(self) -> None:
        """Close the kept connection (it is opened again when needed)."""
        connection, self._connection = self._connection, None
        if connection is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                connection.close()


def _locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("inbox write lock", None, TimeoutError("locked"))


class _FileLock:
    """``flock`` on a file next to a SQLite database (per open file description,
    so the :class:`Writer`'s thread lock serialises the threads of a process)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd = -1
        self._pid = -1

    @classmethod
    def for_engine(cls, engine: sa.Engine, timeout: float) -> _FileLock | None:
        """``None`` where it does not apply: other databases, in-memory SQLite,
        systems without ``fcntl`` (SQLite's own locking then)."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:") or fcntl is None:
            return None
        path = database.removeprefix("file:").split("?", 1)[0]
        return cls(os.path.abspath(path) + "-posweb.lock", timeout)

    @contextlib.contextmanager
    def hold(self) -> t.Iterator[None]:
        if self._pid != os.getpid():  # a forked child must not share its parent's lock
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        deadline, delay = time.monotonic() + self.timeout, 0.00005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _locked() from None
                time.sleep(delay)
                delay = min(delay * 2, 0.0002)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def create_tables(engine: sa.Engine) -> None:
    """Create the inbox tables unless they exist.

    Several processes may start at once (gunicorn workers); the loser of a
    concurrent ``CREATE TABLE`` tries again and then finds the tables there.
    """
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.DBAPIError:
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
