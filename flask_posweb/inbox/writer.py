"""How the inbox writes: one group commit for both databases, every write by its own deadline.

Writes queue in their process, and the first thread to find the queue free
*leads*: it commits every write queued by then, its own included, in one
transaction on the channel's own connection, so concurrent requests of a
process share one commit and one disk sync::

    thread --> its process's group commit --> SQLite only: the lock file --> BEGIN ... COMMIT
               (threads arriving together      (flock: processes take    (SQLite: BEGIN IMMEDIATE,
                share one transaction and        turns; SQLite's own busy  tried again by the
                one disk sync)                   wait would cap throughput) deadline if a connection
                                                                            not ours holds the lock)

Each write carries its own :class:`~.deadline.Deadline` (``POSWEB_DATABASE_TIMEOUT``
from the start of its request) through every one of these waits, whoever
holds what: a write that has not started committing by its deadline is
withdrawn, nothing of it written, and its caller answers 503. The thread that
leads waits by its own deadline only; when that passes, it hands the other
writes back to the queue for the next leader. On PostgreSQL a transaction
whose deadline differs from the connection's configured timeouts sets its own
(``SET LOCAL``).

Some writes need not be waited for: a receiver's outcome (losing it to a
crash only runs the receiver again). :meth:`GroupWriter.write_later` queues
one without a waiting thread: it is committed with the next write of the
process (a delivery's, which costs then no lock hold of its own) or by
:meth:`GroupWriter.flush`, which the background dispatcher calls soon after.

Each channel keeps one connection (it is used by one leader at a time): no
pool checkout, no ping per write. A connection found dead (a database
restart) is replaced, and the write tried once more.

Reads never take part: they are snapshots on other connections.

.. versionadded:: 0.2
.. versionchanged:: 0.3
    One discipline for SQLite and PostgreSQL; writes that need not be waited for.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import sqlalchemy as sa

from ..exceptions import StoreError
from .deadline import Deadline
from .deadline import StoreBusyError
from .engines import DEADLINE
from .engines import Engines
from .engines import sqlite_path

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

__all__ = ["Deadline", "GroupWriter", "StoreBusyError", "create_writer"]

logger = logging.getLogger("flask_posweb")

R = t.TypeVar("R")
Operation = Callable[[sa.Connection], R]
#: Told the result (or the error) of a write no thread waited for, once committed.
Done = Callable[[t.Any, "BaseException | None"], None]


def create_writer(engines: Engines) -> GroupWriter:
    """The writer for the inbox's database."""
    lock = None
    if engines.dialect.name == "sqlite" and fcntl is not None:
        lock = os.path.abspath(sqlite_path(engines.durable.url)) + "-posweb.lock"
    return GroupWriter(engines, lock)


class GroupWriter:
    """Group commit, one channel per kind of write (durable and relaxed, see
    :mod:`.engines`); on SQLite, a lock file the processes take turns on."""

    def __init__(self, engines: Engines, lock_path: str | None) -> None:
        self._durable = _Channel(engines.durable, engines.timeout, lock_path)
        self._relaxed = _Channel(engines.relaxed, engines.timeout, lock_path)

    def write(self, operation: Operation[R], deadline: Deadline, *, durable: bool = True) -> R:
        """Run ``operation`` in a transaction and return its result once committed.

        :param durable: ``False`` for writes whose loss in a crash costs a
            repeat, never a delivery (see :mod:`.engines`).
        :raises StoreBusyError: the deadline passed first; nothing was written.
        """
        return (self._durable if durable else self._relaxed).submit(operation, deadline)

    def write_later(self, operation: Operation[t.Any], done: Done) -> None:
        """Queue ``operation`` for the next commit of this process, without
        waiting: ``done(result, error)`` is called once it is committed (or failed)."""
        self._durable.submit_later(operation, done)

    def flush(self, deadline: Deadline) -> None:
        """Commit the writes queued without a waiter, if there are any."""
        self._durable.flush(deadline)

    @property
    def waiting(self) -> int:
        """Writes queued without a waiter, not yet committed."""
        return self._durable.later

    def close(self) -> None:
        """Close the connections kept open (they are opened again when needed)."""
        self._durable.close()
        self._relaxed.close()


_QUEUED, _TAKEN, _COMMITTING, _DONE, _WITHDRAWN = range(5)


class _Pending:
    """One write on its way: queued, taken into a leader's batch, committing, then done
    (or withdrawn by its own thread when its deadline passed before it committed)."""

    __slots__ = ("operation", "deadline", "result", "error", "state", "done", "then")

    def __init__(
        self, operation: Operation[t.Any], deadline: Deadline, then: Done | None = None
    ) -> None:
        self.operation = operation
        self.deadline = deadline
        self.result: t.Any = None
        self.error: BaseException | None = None
        self.state = _QUEUED
        self.done = threading.Event()
        #: For a write nobody waits for: told its outcome instead.
        self.then = then

    def finish(self, result: t.Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.state = result, error, _DONE
        self.done.set()
        if self.then is not None:
            try:
                self.then(result, error)
            except Exception:  # never the committing thread's problem
                logger.exception("A deferred write's follow-up failed")


class _Channel:
    """Writes of one kind (durable or relaxed) in one process.

    The first thread to become *leader* commits every write queued by then,
    its own included, in one transaction; the others find theirs done. With
    one thread this is one plain transaction. If a shared transaction fails,
    its writes are tried again one by one, so that only the bad one fails.
    """

    #: A deadline this close to the configured timeout uses the connection's settings.
    SLACK = 0.25

    def __init__(self, engine: sa.Engine, timeout: float, lock_path: str | None) -> None:
        self.engine = engine
        self.timeout = timeout
        self._lock_file = _LockFile(lock_path) if lock_path is not None else None
        self._queue: list[_Pending] = []
        #: Guards the queue and every pending write's state.
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self._connection: sa.Connection | None = None
        self._pid = -1

    @property
    def later(self) -> int:
        with self._queue_lock:
            return sum(1 for member in self._queue if member.then is not None)

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

    def submit_later(self, operation: Operation[t.Any], then: Done) -> None:
        # Whenever it is committed: the deadline is only the leader's, when it leads.
        pending = _Pending(operation, Deadline(max(self.timeout, 60)), then)
        with self._queue_lock:
            self._queue.append(pending)

    def flush(self, deadline: Deadline) -> None:
        if self.later:
            self.submit(lambda connection: None, deadline)

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
        for attempt in (1, 2):
            locked = False
            try:
                with self._transaction(own.deadline) as connection:
                    locked = True
                    with self._queue_lock:  # from here on nothing is withdrawn
                        batch = [m for m in batch if m.state in (_TAKEN, _COMMITTING)]
                        for member in batch:
                            member.state = _COMMITTING
                    results = [member.operation(connection) for member in batch]
            except Exception as exc:
                if attempt == 1 and _disconnected(exc):
                    continue  # a dead connection (a restarted server): a new one, once
                if locked:
                    self._failed(batch, exc)
                else:
                    self._hand_back(own, batch, exc)
                return
            for member, result in zip(batch, results, strict=True):
                member.finish(result)
            return

    def _hand_back(self, own: _Pending, batch: list[_Pending], exc: Exception) -> None:
        """The locks were not had by the leader's deadline: it answers, and the
        others (whose deadlines may be later) go back to the queue, first."""
        with self._queue_lock:
            # Committing too: a first attempt that lost its connection began them.
            rest = [m for m in batch if m.state in (_TAKEN, _COMMITTING) and m is not own]
            for member in rest:
                member.state = _QUEUED
            self._queue[:0] = rest
        own.finish(error=exc)

    def _failed(self, batch: list[_Pending], exc: Exception) -> None:
        if len(batch) == 1:
            batch[0].finish(error=exc)
        else:  # one bad write must not fail its neighbours: each on its own
            self._one_by_one(batch)

    def _one_by_one(self, batch: list[_Pending]) -> None:
        for member in batch:
            try:
                with self._transaction(member.deadline) as connection:
                    result = member.operation(connection)
            except Exception as exc:
                member.finish(error=exc)
            else:
                member.finish(result)

    @contextlib.contextmanager
    def _transaction(self, deadline: Deadline) -> Iterator[sa.Connection]:
        with self._lock_file.held(deadline) if self._lock_file else contextlib.nullcontext():
            connection = self._connect()
            try:
                # SQLite: BEGIN IMMEDIATE waits for the database's lock by this
                # deadline (see engines.py).
                connection.info[DEADLINE] = deadline
                with connection.begin():
                    self._bound(connection, deadline)
                    yield connection
            except BaseException:
                # Whatever failed may have left it unusable, and a connection
                # that is fine may still be one made while the server refused
                # writes (PostgreSQL keeps a session's default_transaction_read_only
                # for its life): discarded, not handed back to the pool.
                self.close(discard=True)
                raise

    def _bound(self, connection: sa.Connection, deadline: Deadline) -> None:
        """PostgreSQL: a transaction whose deadline is not the connection's sets its own."""
        if connection.dialect.name != "postgresql":
            return
        left = deadline.left()
        if left <= 0:
            raise StoreBusyError()
        if abs(left - self.timeout) > self.SLACK:
            millis = max(1, int(left * 1000))
            connection.exec_driver_sql(
                f"SET LOCAL lock_timeout = {millis}; SET LOCAL statement_timeout = {millis}"
            )

    def _connect(self) -> sa.Connection:
        if self._pid != os.getpid():
            # A forked child must not touch its parent's connection, not even
            # to close it: forget it and open its own.
            self._connection, self._pid = None, os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        return self._connection

    def close(self, *, discard: bool = False) -> None:
        """Let go of the kept connection (``discard``: not back to the pool)."""
        connection, self._connection = self._connection, None
        if connection is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                if discard:
                    connection.invalidate()
                connection.close()


def _disconnected(exc: BaseException) -> bool:
    """Whether the connection died under the write (SQLAlchemy says so)."""
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


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
