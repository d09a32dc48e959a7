"""The inbox's tables and engine: SQLAlchemy Core, one schema for SQLite and PostgreSQL.

SQLite is the zero-configuration default (a file in the app's instance folder)
and is tuned here for several web processes writing at once; PostgreSQL lets
many web nodes and workers share one inbox.
"""

from __future__ import annotations

import os
import time
import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = ["attempts", "create_engine", "create_tables", "deliveries", "metadata"]

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

#: One row per receiver call: which receiver, which attempt, how it went.
attempts = sa.Table(
    "posweb_receiver_attempts",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        _Id,
        sa.ForeignKey("posweb_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("duration_ms", sa.Float(), nullable=False),
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
