"""Group commit: the writes several threads make at the same moment share one transaction.

A commit that waits for the disk (SQLite ``synchronous=FULL``) costs a disk
sync, a fixed price whatever the transaction holds. With gthread or another
threaded server, requests arriving together then share one: the first thread
to take the lock commits every write queued by then, its own included; the
others find theirs done. This is the leader/follower scheme of a write-ahead
log's group commit; with one thread it is one plain transaction.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import threading
import typing as t
from collections.abc import Callable

import sqlalchemy as sa

__all__ = ["GroupCommit"]

R = t.TypeVar("R")
Write = Callable[[bool], contextlib.AbstractContextManager[sa.Connection]]


class _Pending:
    __slots__ = ("operation", "durable", "result", "error", "done")

    def __init__(self, operation: Callable[[sa.Connection], t.Any], durable: bool) -> None:
        self.operation = operation
        self.durable = durable
        self.result: t.Any = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit:
    """Runs submitted operations in shared transactions.

    :param write: opens a write transaction; called with ``durable``, true when
        any operation of the batch needs its commit on disk before returning.
    """

    def __init__(self, write: Write) -> None:
        self._write = write
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def submit(self, operation: Callable[[sa.Connection], R], durable: bool = True) -> R:
        """Run ``operation`` in a transaction; return its result once committed.

        :raises: whatever the transaction raised: every operation of a batch
            shares its fate, so none of them was written.
        """
        pending = _Pending(operation, durable)
        with self._queue_lock:
            self._queue.append(pending)
        with self._commit_lock:
            if not pending.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if pending.error is not None:
            raise pending.error
        return t.cast(R, pending.result)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._write(any(p.durable for p in batch)) as connection:
                results = [p.operation(connection) for p in batch]
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done = True
