"""How the inbox writes: one place that waits, with one deadline.

SQLite lets one writer in at a time. Its own busy handler makes the others
sleep 1 to 100 ms between tries, and under several gunicorn workers that
sleep, not the disk, caps throughput. So the inbox's SQLite writers queue
instead, in one discipline::

    thread --> its process's group commit --> the lock file (flock) --> BEGIN IMMEDIATE ... COMMIT
               (threads arriving together     (processes take turns;     (never contended: every
                share one transaction and       the only wait, bounded     writer of ours holds
                one disk sync)                  by the request's deadline) the lock file first)

A write waits in exactly one queue, and for at most POSWEB_DATABASE_TIMEOUT in
all (a :class:`Deadline` travels with it); then it is a 503. Reads never take
part: they are WAL snapshots on other connections.

PostgreSQL needs none of this: each write is a transaction of its own on a
pooled connection, and the server lets writers in together.

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

import sqlalchemy as sa

from ..exceptions import StoreError
from .database import Engines
from .database import sqlite_path

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

__all__ = ["Deadline", "StoreBusyError", "Writer", "create_writer"]

R = t.TypeVar("R")
Operation = Callable[[sa.Connection], R]


class Deadline:
    """The end of one request's wait for the store.

    :param seconds: POSWEB_DATABASE_TIMEOUT, counted from now.
    """

    __slots__ = ("at",)

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds still to wait (never negative)."""
        return max(0.0, self.at - time.monotonic())


class StoreBusyError(StoreError):
    """The write lock was not free within the deadline."""


class Writer(t.Protocol):
    """Runs write transactions."""

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        """Run ``operation`` in a transaction and return its result once committed.

        :param durable: ``False`` for writes whose loss in a crash costs a
            repeat, never a delivery (see :mod:`.database`).
        """

    def close(self) -> None:
        """Close the connections kept open (they are opened again when needed)."""


def create_writer(engines: Engines) -> Writer:
    """The writer for the inbox's database."""
    if engines.dialect.name == "sqlite" and fcntl is not None:
        lock = os.path.abspath(sqlite_path(engines.durable.url)) + "-posweb.lock"
        return SQLiteWriter(engines, lock)
    return PooledWriter(engines)


class PooledWriter:
    """One transaction per write, on a pooled connection (PostgreSQL)."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        engine = self.engines.durable if durable else self.engines.relaxed
        with engine.begin() as connection:
            return operation(connection)

    def close(self) -> None:
        pass


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


class _Pending:
    __slots__ = ("operation", "result", "error", "taken", "done")

    def __init__(self, operation: Operation[t.Any]) -> None:
        self.operation = operation
        self.result: t.Any = None
        self.error: BaseException | None = None
        self.taken = False
        self.done = threading.Event()


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
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self._connection: sa.Connection | None = None
        self._pid = -1

    def submit(self, operation: Operation[R], deadline: Deadline) -> R:
        pending = _Pending(operation)
        with self._queue_lock:
            self._queue.append(pending)
        if self._leader.acquire(timeout=deadline.left()):
            try:
                if not pending.taken:
                    with self._queue_lock:
                        batch, self._queue = self._queue, []
                        for member in batch:
                            member.taken = True
                    self._commit(batch, deadline)
            finally:
                self._leader.release()
        else:
            with self._queue_lock:
                if not pending.taken:  # still queued: withdraw it, nothing was written
                    self._queue.remove(pending)
                    raise StoreBusyError("The inbox is busy: no write lock within the timeout.")
            # A leader holds it: its own deadline bounds how long that takes.
            pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return t.cast(R, pending.result)

    def _commit(self, batch: list[_Pending], deadline: Deadline) -> None:
        try:
            with self._transaction(deadline) as connection:
                results = [member.operation(connection) for member in batch]
            for member, result in zip(batch, results, strict=True):
                member.result = result
        except StoreBusyError as exc:
            for member in batch:
                member.error = exc
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # one bad write must not fail its neighbours: each on its own
                for member in batch:
                    self._commit([member], deadline)
        finally:
            for member in batch:
                member.done.set()

    @contextlib.contextmanager
    def _transaction(self, deadline: Deadline) -> Iterator[sa.Connection]:
        with self._lock_file.held(deadline):
            connection = self._connect()
            try:
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
                    raise StoreBusyError(
                        "The inbox is busy: no write lock within the timeout."
                    ) from None
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
