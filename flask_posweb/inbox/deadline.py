"""The end of one request's wait for the store: a :class:`Deadline` travels with
each write, through every queue it waits in.

.. versionadded:: 0.2
"""

from __future__ import annotations

import time

from ..exceptions import StoreError

__all__ = ["Deadline", "StoreBusyError"]


class StoreBusyError(StoreError):
    """A lock the write needed was not free by its deadline; nothing was written."""

    def __init__(self) -> None:
        super().__init__("The inbox is busy: no write lock within the timeout.")


class Deadline:
    """The end of one request's wait for the store.

    :param seconds: ``POSWEB_DATABASE_TIMEOUT``, counted from now.
    """

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds still to wait (never negative)."""
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        """Whether there is no time left."""
        return time.monotonic() >= self.at
