"""Draining due deliveries: the loop behind the background thread and ``flask posweb worker``.

Any number of runners, in any number of processes, may drain one inbox: each
delivery is leased to one dispatcher at a time. A runner also applies the
retention rules as it goes (see :meth:`~flask_posweb.inbox.Inbox.housekeep`).

The background thread of a web process (``inline``, ``thread`` and ``celery``
modes) starts at the first request the process serves, any request (a load
balancer's health check will do), so that retries and deliveries orphaned by
a dead process need no new webhook after a restart; and again in a child
after ``fork`` (gunicorn ``--preload``). It never starts in CLI commands
other than ``worker``, in task-engine workers, or with ``TESTING`` on.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import typing as t
import uuid
import weakref

from ..exceptions import StoreError

if t.TYPE_CHECKING:
    from ..state import PosWebState

__all__ = [
    "HOUSEKEEPING_INTERVAL",
    "BackgroundRunner",
    "Runner",
    "new_owner",
    "report_lacking",
]

logger = logging.getLogger("flask_posweb")

#: Seconds between two passes of retention in one runner.
HOUSEKEEPING_INTERVAL = 60.0


def new_owner(kind: str) -> str:
    """A lease owner id that says who holds a delivery: ``kind@host:pid:random``."""
    return f"{kind}@{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Runner:
    """Takes due deliveries one at a time (each with its own lease) and dispatches them.

    :param relay: instead of dispatching here, ask the task engine to (Celery mode's
        relay, see :mod:`~flask_posweb.dispatch.celery`). By default a runner does
        what the dispatch mode's background work is.
    """

    def __init__(
        self, state: PosWebState, owner: str | None = None, *, relay: bool | None = None
    ) -> None:
        self.state = state
        self.owner = owner or new_owner("worker")
        self.relay = relay
        self._housekept = -HOUSEKEEPING_INTERVAL

    def drain(self, limit: int | None = None) -> int:
        """Dispatch due deliveries until none is left (or ``limit``); return how many."""
        dispatcher = self.state.require_dispatcher()
        done = 0
        while limit is None or done < limit:
            delivery = dispatcher.take_due(self.owner)
            if delivery is None:
                break
            with self.state.app.app_context():
                dispatcher.run(delivery, self.owner)
            done += 1
        return done

    def housekeep(self, force: bool = False) -> dict[str, int]:
        """Apply the retention rules, at most once per :data:`HOUSEKEEPING_INTERVAL`."""
        if not force and time.monotonic() - self._housekept < HOUSEKEEPING_INTERVAL:
            return {}
        self._housekept = time.monotonic()
        deleted = self.state.housekeep()
        if any(deleted.values()):
            logger.info(
                "Retention: deleted %s", ", ".join(f"{n} {k}" for k, n in deleted.items() if n)
            )
        return deleted

    def run_forever(
        self, stop: threading.Event, on_batch: t.Callable[[int], None] | None = None
    ) -> None:
        """Drain, then wait ``POSWEB_POLL_INTERVAL`` (or until ``stop`` is set); repeat.

        A store outage is logged and waited out, not raised: a worker must
        outlive a database restart.
        """
        while not stop.is_set():
            count = self.one_pass()
            if on_batch is not None and count:
                on_batch(count)
            if not count:
                stop.wait(self.state.settings.poll_interval)

    def work(self) -> int:
        """Dispatch (or relay) what is due now; how many deliveries were handled."""
        if self.relay is None:
            return self.state.mode.background_pass(self)
        if self.relay:
            from .celery import relay

            return relay(self.state)
        return self.drain()

    def one_pass(self) -> int:
        """One pass of :meth:`work`, then retention when due."""
        try:
            count = self.work()
            self.housekeep()
        except StoreError as exc:
            logger.warning("Dispatcher %s: %s; retrying", self.owner, exc)
            count = 0
        return count


def report_lacking(state: PosWebState) -> list[str]:
    """Say loudly, at a dispatcher's start, which stored deliveries wait for
    receivers this process does not have (a worker whose app factory did not
    import the receiver modules, or another app on the same database)."""
    try:
        lacking = state.require_dispatcher().lacking()
    except StoreError as exc:
        logger.warning("Could not check for deliveries waiting on other receivers: %s", exc)
        return []
    lines = [
        f"{count} {event} deliveries expect receivers this process lacks "
        f"({', '.join(sorted(names))}); they are left for a dispatcher that has them."
        for event, names, count in lacking
    ]
    for line in lines:
        logger.error("%s", line)
    return lines


class BackgroundRunner:
    """A daemon thread in the web process that runs :meth:`Runner.one_pass`.

    It holds its app weakly and ends once the app is gone.
    """

    def __init__(self, state: PosWebState) -> None:
        self._state = weakref.ref(state)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        ref = weakref.ref(self)

        def after_fork() -> None:
            runner = ref()
            if runner is not None and runner._thread is not None:
                runner._thread = None  # the parent's thread did not come along
                runner.ensure_started()

        os.register_at_fork(after_in_child=after_fork)

    @property
    def running(self) -> bool:
        """Whether the thread runs in this process."""
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def ensure_started(self) -> None:
        """Start the thread in this process unless it is running."""
        if self.running:
            return
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="posweb-dispatch", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        if self.running:
            self._wake.set()

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the thread (tests, shutdown); it finishes the delivery in hand."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        runner: Runner | None = None
        while not self._stop.is_set():
            state = self._state()
            if state is None:
                return
            try:
                if runner is None:
                    runner = Runner(state, new_owner("thread"))
                    report_lacking(state)
                runner.state = state
                count = runner.one_pass()
            except Exception:  # never let the thread die: the next poll tries again
                logger.exception("Background dispatch failed; retrying")
                count = 0
            interval = state.settings.poll_interval
            del state  # hold the app only while working
            if runner is not None:
                runner.state = None  # type: ignore[assignment]
            if not count:
                self._wake.wait(interval)
                self._wake.clear()
