"""Draining due deliveries: the loop behind the background thread and ``flask posweb worker``.

Any number of runners, in any number of processes, may drain one inbox: each
delivery is leased to one runner at a time (see :mod:`flask_posweb.inbox`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import typing as t
import uuid
import weakref

from .exceptions import StoreError

if t.TYPE_CHECKING:
    from .state import PosWebState

__all__ = ["BackgroundRunner", "Runner", "new_owner"]

logger = logging.getLogger("flask_posweb")


def new_owner(kind: str) -> str:
    """A lease owner id that says who holds a delivery: ``kind@host:pid:random``."""
    return f"{kind}@{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Runner:
    """Leases due deliveries in batches and dispatches them.

    :param batch: deliveries leased at once; each batch is leased for
        ``POSWEB_LEASE``, so keep it small enough to finish within that.
    """

    def __init__(self, state: PosWebState, owner: str | None = None, batch: int = 10) -> None:
        self.state = state
        self.owner = owner or new_owner("worker")
        self.batch = batch

    def drain(self, limit: int | None = None) -> int:
        """Dispatch due deliveries until none is left (or ``limit``); return how many."""
        inbox, dispatcher = self.state.require_inbox(), self.state.require_dispatcher()
        done = 0
        while limit is None or done < limit:
            size = self.batch if limit is None else min(self.batch, limit - done)
            leased = inbox.claim_due(self.owner, self.state.settings.lease, size)
            if not leased:
                break
            for delivery in leased:
                with self.state.app.app_context():
                    dispatcher.run(delivery, self.owner)
                done += 1
        return done

    def run_forever(
        self, stop: threading.Event, on_batch: t.Callable[[int], None] | None = None
    ) -> None:
        """Drain, then wait ``POSWEB_POLL_INTERVAL`` (or until ``stop`` is set); repeat.

        A store outage is logged and waited out, not raised: a worker must
        outlive a database restart.
        """
        while not stop.is_set():
            try:
                count = self.drain()
            except StoreError as exc:
                logger.warning("Worker %s: %s; retrying", self.owner, exc)
                count = 0
            if on_batch is not None and count:
                on_batch(count)
            if not count:
                stop.wait(self.state.settings.poll_interval)


class BackgroundRunner:
    """A daemon thread in the web process that drains the inbox.

    ``thread`` dispatch runs every attempt here; ``inline`` dispatch runs the
    first attempt in the request and leaves retries (and deliveries orphaned by
    a dead process) to this thread. Started on first use in each process, so it
    survives gunicorn's fork. It holds its app weakly and ends once the app is gone.
    """

    def __init__(self, state: PosWebState) -> None:
        self._state = weakref.ref(state)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ensure_started(self) -> None:
        """Start the thread in this process unless it is running."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="posweb-dispatch", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()

    def wake(self) -> None:
        """Dispatch now rather than at the next poll."""
        self.ensure_started()
        self._wake.set()

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the thread (tests, shutdown); it finishes the delivery in hand."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        owner = new_owner("thread")
        while not self._stop.is_set():
            state = self._state()
            if state is None:
                return
            try:
                count = Runner(state, owner).drain()
            except Exception:  # never let the thread die: the next poll tries again
                logger.exception("Background dispatch failed; retrying")
                count = 0
            interval = state.settings.poll_interval
            del state  # hold the app only while working
            if not count:
                self._wake.wait(interval)
                self._wake.clear()
