"""The inbox's tables and engines: SQLAlchemy Core, one schema for SQLite and PostgreSQL.

SQLite is the zero-configuration default (a file in the app's instance folder);
PostgreSQL lets many web nodes and workers share one inbox. The layout is
versioned by Alembic (see :mod:`.migrations`); change it only together with a
new revision there.

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

__all__ = [
    "Engines",
    "create_engines",
    "deliveries",
    "driver_reason",
    "duplicates",
    "loyalty_answers",
    "metadata",
    "receiver_sets",
    "sqlite_path",
]

metadata = sa.MetaData()

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias


def _times(*names: str, nullable: tuple[str, ...] = ()) -> list[sa.Column[t.Any]]:
    return [sa.Column(name, sa.DateTime(), nullable=name in nullable) for name in names]


#: One row per delivery. Times are naive UTC.
deliveries = sa.Table(
    "posweb_deliveries",
    metadata,
    # AUTOINCREMENT on SQLite: an id is never given twice, even after the newest
    # rows were pruned (hosts are idempotent on ``event.id``).
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    # POSWEB_INBOX_NAME: apps that share a database on purpose keep apart.
    sa.Column("inbox", sa.String(64), nullable=False),
    sa.Column("event", sa.String(80), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    # Why a delivery was rejected: {field path: [messages]}.
    sa.Column("errors", sa.JSON(), nullable=True),
    # Fields the docs mark required that the body lacked (accepted all the same).
    sa.Column("missing", sa.JSON(), nullable=True),
    # Key of the receivers the receiving app had for the event (posweb_receiver_sets):
    # only a dispatcher that has all of them may take the delivery.
    sa.Column("receiver_set", sa.String(64), nullable=True),
    # Every receiver call, oldest first (see records.Attempt).
    sa.Column("outcomes", sa.JSON(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    # Bumped by a replay of a finished delivery: receivers' earlier successes
    # belong to the previous generation and no longer count.
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("replay", sa.Boolean(), nullable=False),
    *_times("received_at", "updated_at", "next_attempt_at", nullable=("next_attempt_at",)),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    # When a task engine (Celery) was last asked to dispatch it.
    sa.Column("enqueued_at", sa.DateTime(), nullable=True),
    sa.Index("ix_posweb_deliveries_due", "inbox", "status", "next_attempt_at"),
    sa.Index("ix_posweb_deliveries_finished", "status", "updated_at"),
    sa.Index("ix_posweb_deliveries_received", "received_at"),
    # The log page: one status, or one event, newest first; an event's counts
    # per status (see migration 0003).
    sa.Index("ix_posweb_deliveries_status_id", "inbox", "status", "id"),
    sa.Index("ix_posweb_deliveries_event_id", "inbox", "event", "id"),
    sa.Index("ix_posweb_deliveries_event_status", "inbox", "event", "status"),
    sqlite_autoincrement=True,
)

#: The latest accepted delivery of each duplicate scope (see ``duplicates.py``).
duplicates = sa.Table(
    "posweb_duplicates",
    metadata,
    # A hash of (inbox, event, resource or body): fixed length, whatever the body.
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column(
        "delivery_id",
        _Id,
        sa.ForeignKey("posweb_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("seen_at", sa.DateTime(), nullable=False),
    sa.Index("ix_posweb_duplicates_delivery", "delivery_id"),
    sa.Index("ix_posweb_duplicates_seen", "seen_at"),
)

#: Every set of receivers an app has had for an event: a delivery names the one
#: it expects, and a dispatcher takes only deliveries whose set it has.
receiver_sets = sa.Table(
    "posweb_receiver_sets",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(80), nullable=False),
    sa.Column("receivers", sa.JSON(), nullable=False),
    sa.Column("first_seen", sa.DateTime(), nullable=False),
)

#: Loyalty answers remembered so that an order is rewarded once (not deliveries:
#: never listed, replayed or pruned with them).
loyalty_answers = sa.Table(
    "posweb_loyalty_answers",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("inbox", sa.String(64), nullable=False),
    sa.Column("call", sa.String(40), nullable=False),
    # "id:<order ID>" (at most 200 characters, checked first) or "sha256:<body hash>".
    sa.Column("key", sa.String(240), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raw", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.Column("answer", sa.JSON(), nullable=True),
    sa.Column("errors", sa.JSON(), nullable=True),
    *_times("created_at", "updated_at"),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    sa.UniqueConstraint("inbox", "call", "key", name="uq_posweb_loyalty_answers_key"),
    sa.Index("ix_posweb_loyalty_answers_updated", "updated_at"),
    sqlite_autoincrement=True,
)


@dataclasses.dataclass(frozen=True)
class Engines:
    """The three engines of one inbox (see the module docstring)."""

    read: sa.Engine
    durable: sa.Engine
    relaxed: sa.Engine

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
        created = sa.create_engine(
            url, connect_args={"timeout": timeout, "check_same_thread": False}
        )

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
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return created

    return Engines(read=engine(None), durable=engine("FULL"), relaxed=engine("NORMAL"))


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
    options = f"-c lock_timeout={millis} -c statement_timeout={millis * 6} -c TimeZone=UTC"

    def engine(extra: str = "") -> sa.Engine:
        try:
            return sa.create_engine(
                url,
                pool_pre_ping=True,
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

    durable = engine()
    return Engines(read=durable, durable=durable, relaxed=engine(" -c synchronous_commit=off"))


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
