"""Draining due deliveries: the loop behind the background thread and ``flask posweb worker``.

Any number of runners, in any number of processes, may drain one inbox: each
delivery is leased to one dispatcher at a time. A runner also applies the
retention rules as it goes (see :meth:`~flask_posweb.inbox.Inbox.housekeep`).

Merchants take turns: a runner takes the due-first delivery of each merchant
that has one, in the order their oldest due delivery arrived, then looks again.
So one merchant's backlog (a re-sync of 50,000 products) delays another
merchant's payment by one turn, not by the backlog. A lone merchant's
deliveries are taken up to :data:`TURN` at a time, looking every
:data:`LOOK_EVERY` of them whether another merchant's came (a cheap read: the
full look reads the whole backlog).

The background thread of a web process (``inline``, ``thread`` and ``celery``
modes) starts at the first request the process serves, any request (a load
balancer's health check will do), so that retries and deliveries orphaned by
a dead process need no new webhook after a restart; and again in a child
after ``fork`` (gunicorn ``--preload``). It never starts in CLI commands
other than ``worker``, in task-engine workers, or with ``TESTING`` on.

.. versionadded:: 0.1
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from ..exceptions import StoreError
from .dispatcher import Dispatcher
from .owners import new_owner

__all__ = [
    "HOUSEKEEPING_INTERVAL",
    "LOOK_EVERY",
    "SETTLE_DELAY",
    "TURN",
    "BackgroundRunner",
    "Runner",
    "Work",
    "report_lacking",
]

logger = logging.getLogger("flask_posweb")

#: Seconds between two passes of retention in one runner.
HOUSEKEEPING_INTERVAL = 60.0
#: Deliveries a lone merchant's turn takes before the runner looks for others.
TURN = 50
#: ... and how often within it the runner asks whether another merchant's came.
LOOK_EVERY = 5
#: Seconds a request's deferred outcome waits for the process's next commit to
#: carry it (under load, the next delivery's) before the background thread
#: commits it itself: short next to a lease, long next to a busy shop's gap
#: between two deliveries.
SETTLE_DELAY = 0.02


class Runner:
    """Takes due deliveries one at a time (each with its own lease) and dispatches them.

    :param work: what one pass does: by default :meth:`drain`; the dispatch
        mode's background work otherwise (Celery mode relays instead).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        owner: str | None = None,
        *,
        work: Work | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.owner = owner or new_owner("worker")
        self._work = work
        self._housekept = -HOUSEKEEPING_INTERVAL
        #: Set to stop: :meth:`drain` returns after the delivery in hand (a
        #: backlog of thousands must not keep SIGTERM waiting).
        self.stop = threading.Event()

    def drain(self, limit: int | None = None) -> int:
        """Dispatch due deliveries until none is left (or ``limit``), merchants in
        turn; return how many."""
        dispatcher = self.dispatcher
        dispatcher.beat()
        done = 0
        while limit is None or done < limit:
            merchants = dispatcher.due_merchants()
            turn = TURN if len(merchants) == 1 else 1
            took = 0
            for merchant in merchants:
                for taken in range(turn):
                    if (limit is not None and done >= limit) or self.stop.is_set():
                        return done
                    if taken and not taken % LOOK_EVERY and dispatcher.others_due(merchant):
                        break  # another merchant's delivery came: its turn first
                    delivery = dispatcher.take_due(self.owner, merchant)
                    if delivery is None:  # taken by another dispatcher meanwhile
                        break
                    with dispatcher.app.app_context():
                        dispatcher.run(delivery, self.owner)
                    done, took = done + 1, took + 1
            if not took:
                break
        return done

    def work(self) -> int:
        """One pass of this runner's work; how many deliveries were handled."""
        return self.drain() if self._work is None else self._work(self)

    def housekeep(self, force: bool = False) -> dict[str, int]:
        """Apply the retention rules and mark the stranded deliveries (see
        :meth:`.Dispatcher.strand`), at most once per :data:`HOUSEKEEPING_INTERVAL`."""
        if not force and time.monotonic() - self._housekept < HOUSEKEEPING_INTERVAL:
            return {}
        self._housekept = time.monotonic()
        dispatcher = self.dispatcher
        dispatcher.strand()
        deleted = dispatcher.inbox.housekeep(dispatcher.policy.retention)
        if any(deleted.values()):
            logger.info(
                "Retention: deleted %s", ", ".join(f"{n} {k}" for k, n in deleted.items() if n)
            )
        return deleted

    def one_pass(self) -> int:
        """One pass of :meth:`work`, then retention when due.

        A store outage is logged and waited out, not raised: a worker must
        outlive a database restart.
        """
        try:
            count = self.work()
            self.housekeep()
        except StoreError as exc:
            logger.warning("Dispatcher %s: %s; retrying", self.owner, exc)
            count = 0
        return count

    def run_forever(
        self, stop: threading.Event, on_batch: Callable[[int], None] | None = None
    ) -> None:
        """One pass, then wait ``POSWEB_POLL_INTERVAL`` (or until ``stop`` is set); repeat.

        ``stop`` also ends a pass after the delivery in hand.
        """
        self.stop = stop
        while not stop.is_set():
            count = self.one_pass()
            if on_batch is not None and count:
                on_batch(count)
            if not count:
                stop.wait(self.dispatcher.policy.poll_interval)


#: What a runner does in one pass (the dispatch mode's background work).
Work = Callable[[Runner], int]


def report_lacking(dispatcher: Dispatcher) -> list[str]:
    """Say loudly, at a dispatcher's start, which stored deliveries wait for
    receivers this process does not have (a worker whose app factory did not
    import the receiver modules, or another app on the same database)."""
    try:
        lacking = dispatcher.lacking()
    except StoreError as exc:
        logger.warning("Could not check for deliveries waiting on other receivers: %s", exc)
        return []
    lines = [
        f"{count} {event} deliveries expect receivers this process lacks "
        f"({', '.join(sorted(names))}); they are left for a dispatcher that has them, "
        "and marked stranded if none shows within POSWEB_STRANDED_AFTER (to run them "
        "with this app's receivers: flask posweb replay --adopt "
        f"--status pending --status failed --event {event})."
        for event, names, count in lacking
    ]
    for line in lines:
        logger.error("%s", line)
    return lines


class BackgroundRunner:
    """A daemon thread in the web process that runs :meth:`Runner.one_pass`,
    and settles the outcomes its requests deferred (:meth:`.Dispatcher.settle`).

    It holds the dispatcher (and so the app) weakly, and ends once it is gone.

    :param work: what each pass does (see :class:`Runner`).
    """

    def __init__(self, dispatcher: Dispatcher, work: Work | None = None) -> None:
        self._dispatcher = weakref.ref(dispatcher)
        self._work = work
        self._lock = threading.Lock()
        #: Set for any reason to stop waiting: a look, a settling, a stop.
        self._wake = threading.Event()
        #: Due deliveries wanted now.
        self._look = threading.Event()
        #: Deferred outcomes to settle shortly.
        self._settle = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        #: Passes the thread has ended (whether it found work or not).
        self.passes = 0
        ref = weakref.ref(self)

        def after_fork() -> None:
            runner = ref()
            if runner is not None and runner._thread is not None:
                runner._thread = None  # the parent's thread did not come along
                runner.ensure_started()

        def at_exit() -> None:
            runner = ref()
            if runner is not None and runner.running:
                # A worker stopped gracefully loses no outcome. The thread (a
                # daemon, killed once this returns) may be committing some now:
                # it finishes and settles first, then what is left is settled.
                runner.stop()
                runner._settle_now()

        os.register_at_fork(after_in_child=after_fork)
        atexit.register(at_exit)

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
            self._look.set()
            self._wake.set()

    def settle_soon(self) -> None:
        """Settle deferred outcomes within :data:`SETTLE_DELAY`."""
        if self.running and not self._settle.is_set():
            self._settle.set()
            self._wake.set()

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the thread (tests, shutdown): it finishes the delivery in hand,
        and settles the deferred outcomes."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        runner: Runner | None = None
        look = True
        while not self._stop.is_set():
            if self._settle.is_set():
                # A request's outcome: the next delivery's commit may carry it.
                self._stop.wait(SETTLE_DELAY)
                self._settle.clear()
            dispatcher = self._dispatcher()
            if dispatcher is None:
                return
            count = 0
            try:
                _settle(dispatcher)
                if look:
                    if runner is None:
                        runner = Runner(dispatcher, new_owner("thread"), work=self._work)
                        runner.stop = self._stop  # a stop ends a pass after the delivery in hand
                        report_lacking(dispatcher)
                    runner.dispatcher = dispatcher
                    count = runner.one_pass()
            except Exception:  # never let the thread die: the next poll tries again
                logger.exception("Background dispatch failed; retrying")
            self.passes += 1
            interval = dispatcher.policy.poll_interval
            del dispatcher  # hold the app only while working
            if runner is not None:
                runner.dispatcher = None  # type: ignore[assignment]
            if count:
                look = True
            else:
                # A poll that ran out, or a wake for due deliveries, looks again.
                look = not self._wake.wait(interval)
                self._wake.clear()
                if self._look.is_set():
                    self._look.clear()
                    look = True
        self._settle_now()

    def _settle_now(self) -> None:
        dispatcher = self._dispatcher()
        if dispatcher is not None:
            _settle(dispatcher)


def _settle(dispatcher: Dispatcher) -> None:
    """Settle the deferred outcomes; a store outage leaves them for the next try."""
    try:
        dispatcher.settle()
    except StoreError as exc:
        logger.warning("Deferred outcomes not recorded yet: %s; retrying", exc)
