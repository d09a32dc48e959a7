"""How the inbox writes: one place that waits, and every write by its own deadline.

SQLite lets one writer in at a time. Its own busy handler makes the others
sleep 1 to 100 ms between tries, and under several gunicorn workers that
sleep, not the disk, caps throughput. So the inbox's SQLite writers queue
instead, in one discipline::

    thread --> its process's group commit --> the lock file --> BEGIN IMMEDIATE ... COMMIT
               (threads arriving together     (flock: processes (another connection, not
                share one transaction and       take turns)       ours, may hold SQLite's lock:
                one disk sync)                                    tried again, not waited on)

Each write carries its own :class:`~.deadline.Deadline` (``POSWEB_DATABASE_TIMEOUT``
from the start of its request) through every one of these waits, whoever
holds what: a write that has not started committing by its deadline is
withdrawn, nothing of it written, and its caller answers 503. The thread
that leads a shared commit waits by its own deadline only; when that passes,
it hands the other writes back to the queue for the next leader. Reads never
take part: they are WAL snapshots on other connections.

PostgreSQL needs no queue: each write is a transaction of its own on a pooled
connection, and the server lets writers in together. Its waits (a free
connection, a row or table lock, the statement) are bounded by the deadline
too.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

from ..exceptions import StoreError
from .deadline import Deadline
from .deadline import StoreBusyError
from .engines import DEADLINE
from .engines import Engines
from .engines import sqlite_path

if t.TYPE_CHECKING:
    import sqlalchemy as sa

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

__all__ = ["Deadline", "PooledWriter", "SQLiteWriter", "StoreBusyError", "Writer", "create_writer"]

R = t.TypeVar("R")
Operation = Callable[["sa.Connection"], R]


class Writer(t.Protocol):
    """Runs write transactions."""

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        """Run ``operation`` in a transaction and return its result once committed.

        :param durable: ``False`` for writes whose loss in a crash costs a
            repeat, never a delivery (see :mod:`.engines`).
        :raises StoreBusyError: the deadline passed first; nothing was written.
        """

    def close(self) -> None:
        """Close the connections kept open (they are opened again when needed)."""


def create_writer(engines: Engines) -> Writer:
    """The writer for the inbox's database."""
    if engines.dialect.name == "sqlite" and fcntl is not None:
        lock = os.path.abspath(sqlite_path(engines.durable.url)) + "-posweb.lock"
        return SQLiteWriter(engines, lock)
    return PooledWriter(engines)


# -- PostgreSQL ----------------------------------------------------------------------


class PooledWriter:
    """One transaction per write, on a pooled connection (PostgreSQL).

    A connection is taken only within the deadline (a semaphore the size of
    the pool stands in front of it), and a transaction whose deadline differs
    from the connection's configured timeouts sets its own (``SET LOCAL``).
    """

    #: A deadline this close to the configured timeout uses the connection's settings.
    SLACK = 0.25

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._free = {
            engine: threading.BoundedSemaphore(_pool_capacity(engine))
            for engine in (engines.durable, engines.relaxed)
        }

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        engine = self.engines.durable if durable else self.engines.relaxed
        free = self._free[engine]
        if not free.acquire(timeout=deadline.left()):
            raise StoreBusyError()
        try:
            with engine.begin() as connection:
                left = deadline.left()
                if left <= 0:
                    raise StoreBusyError()
                if abs(left - self.engines.timeout) > self.SLACK:
                    millis = max(1, int(left * 1000))
                    connection.exec_driver_sql(
                        f"SET LOCAL lock_timeout = {millis}; SET LOCAL statement_timeout = {millis}"
                    )
                return operation(connection)
        finally:
            free.release()

    def close(self) -> None:
        pass


def _pool_capacity(engine: sa.Engine) -> int:
    pool = engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if not callable(size):
        return 1_000_000  # not a queue pool: nothing to wait for
    return int(size()) + max(0, int(overflow))


# -- SQLite --------------------------------------------------------------------------


class SQLiteWriter:
    """Group commit and the lock file, one channel per kind of write."""

    def __init__(self, engines: Engines, lock_path: str) -> None:
        self._durable = _Channel(engines.durable, lock_path)
        self._relaxed = _Channel(engines.relaxed, lock_path)

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        return (self._durable if durable else self._relaxed).submit(operation, deadline)

    def close(self) -> None:
        self._durable.close()
        self._relaxed.close()


_QUEUED, _TAKEN, _COMMITTING, _DONE, _WITHDRAWN = range(5)


class _Pending:
    """One write on its way: queued, taken into a leader's batch, committing, then done
    (or withdrawn by its own thread when its deadline passed before it committed)."""

    __slots__ = ("operation", "deadline", "result", "error", "state", "done")

    def __init__(self, operation: Operation[t.Any], deadline: Deadline) -> None:
        self.operation = operation
        self.deadline = deadline
        self.result: t.Any = None
        self.error: BaseException | None = None
        self.state = _QUEUED
        self.done = threading.Event()

    def finish(self, result: t.Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.state = result, error, _DONE
        self.done.set()


class _Channel:
    """Writes of one kind (durable or relaxed) in one process.

    The first thread to become *leader* commits every write queued by then,
    its own included, in one transaction; the others find theirs done. With
    one thread this is one plain transaction. If a shared transaction fails,
    its writes are tried again one by one, so that only the bad one fails.
    """

    def __init__(self, engine: sa.Engine, lock_path: str) -> None:
        self.engine = engine
        self._lock_file = _LockFile(lock_path)
        self._queue: list[_Pending] = []
        #: Guards the queue and every pending write's state.
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self._connection: sa.Connection | None = None
        self._pid = -1

    def submit(self, operation: Operation[R], deadline: Deadline) -> R:
        pending = _Pending(operation, deadline)
        with self._queue_lock:
            self._queue.append(pending)
        while not pending.done.is_set():
            if self._leader.acquire(timeout=deadline.left()):
                try:
                    if pending.state == _QUEUED:
                        self._lead(pending)
                finally:
                    self._leader.release()
            elif self._withdraw(pending):
                raise StoreBusyError()
            else:  # committing: the write lock is held, only the disk is left
                pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return t.cast(R, pending.result)

    def _withdraw(self, pending: _Pending) -> bool:
        """Take back a write whose deadline passed; ``False`` once it is committing."""
        with self._queue_lock:
            if pending.state == _QUEUED:
                self._queue.remove(pending)
            elif pending.state != _TAKEN:
                return False
            pending.state = _WITHDRAWN
            return True

    def _lead(self, own: _Pending) -> None:
        """Commit every queued write, waiting for the locks by ``own``'s deadline only."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
            for member in batch:
                member.state = _TAKEN
        locked = False
        try:
            with self._transaction(own.deadline) as connection:
                locked = True
                with self._queue_lock:  # from here on nothing is withdrawn
                    batch = [m for m in batch if m.state == _TAKEN]
                    for member in batch:
                        member.state = _COMMITTING
                results = [member.operation(connection) for member in batch]
        except Exception as exc:
            if locked:
                self._failed(batch, exc)
            else:
                self._hand_back(own, batch, exc)
            return
        for member, result in zip(batch, results, strict=True):
            member.finish(result)

    def _hand_back(self, own: _Pending, batch: list[_Pending], exc: Exception) -> None:
        """The locks were not had by the leader's deadline: it answers, and the
        others (whose deadlines may be later) go back to the queue, first."""
        with self._queue_lock:
            own.finish(error=exc)
            rest = [m for m in batch if m.state == _TAKEN and m is not own]
            for member in rest:
                member.state = _QUEUED
            self._queue[:0] = rest

    def _failed(self, batch: list[_Pending], exc: Exception) -> None:
        if len(batch) == 1:
            batch[0].finish(error=exc)
        else:  # one bad write must not fail its neighbours: each on its own
            self._one_by_one(batch)

    def _one_by_one(self, batch: list[_Pending]) -> None:
        for member in batch:
            try:
                with self._transaction(member.deadline) as connection:
                    member.finish(member.operation(connection))
            except Exception as exc:
                member.finish(error=exc)

    @contextlib.contextmanager
    def _transaction(self, deadline: Deadline) -> Iterator[sa.Connection]:
        with self._lock_file.held(deadline):
            connection = self._connect()
            try:
                # BEGIN IMMEDIATE waits for SQLite's lock by this deadline (see engines.py).
                connection.info[DEADLINE] = deadline
                with connection.begin():
                    yield connection
            except BaseException:
                self.close()  # whatever failed may have left it unusable
                raise

    def _connect(self) -> sa.Connection:
        if self._pid != os.getpid():
            # A forked child must not touch its parent's connection, not even
            # to close it: forget it and open its own.
            self._connection, self._pid = None, os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        return self._connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                connection.close()


class _LockFile:
    """``flock`` on a file next to the database. Each channel opens its own
    file description, so the two channels of one process exclude each other
    too; a channel's leader lock serialises its threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = -1

    @contextlib.contextmanager
    def held(self, deadline: Deadline) -> Iterator[None]:
        fd = self._open()
        delay = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # flock has no timeout; short sleeps keep the hand-over quick.
                left = deadline.left()
                if left <= 0:
                    raise StoreBusyError() from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.0005)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._pid != os.getpid():  # a forked child must not share its parent's lock
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                reason = "read-only" if exc.errno in (errno.EROFS, errno.EACCES) else exc.strerror
                raise StoreError(f"The inbox's folder cannot be written ({reason}).") from exc
            self._pid = os.getpid()
        return self._fd
