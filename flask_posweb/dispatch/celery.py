"""Celery dispatch (``POSWEB_DISPATCH = "celery"``): receivers run in the host's Celery workers.

Imported only in this mode, so Celery is never imported otherwise. The inbox
stays the source of truth (a transactional outbox): a delivery is committed,
then a task is sent to wake a worker for it. The task is only a wake-up call::

    request --commit--> inbox row --(after the commit)--> task "flask_posweb.dispatch"(id)
                           ^                                        |
                           |  relay: due, free, not sent lately     v
                           +------------------------------ Celery worker: dispatch_delivery()

- The task takes the delivery's lease first, so a duplicate task is harmless;
  it runs the receivers in the app context and records their outcomes.
- Retries follow the library's backoff with the row as the schedule: a failed
  delivery becomes due again in the inbox, and the *relay* sends its task
  then. No countdown is held in the broker (on Redis those come back after the
  visibility timeout, and may run twice).
- Nothing depends on the broker being up, and no request waits for it: the
  task is sent after the answer, by a thread that sends whatever has queued
  up in one go, on a connection of its own whose waits are bounded by
  ``POSWEB_CELERY_PUBLISH_TIMEOUT`` (about a second). The relay sends a task again for a
  delivery that is due, that no dispatcher holds, and whose task was sent more
  than ``POSWEB_CELERY_REQUEUE_AFTER`` ago (or never): a broker that was down,
  a worker killed with tasks it had reserved. By default the web processes'
  background dispatcher relays (no beat, no extra process); deployments that
  turn it off run ``flask posweb worker --relay`` or the beat task
  ``flask_posweb.relay``.
- Tasks acknowledge late and are rejected (requeued) when their worker
  process dies, so a delivery in hand is dispatched again (at least once).

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import typing as t
import weakref
from collections.abc import Sequence

from celery import Celery as CeleryApp
from celery import shared_task
from flask import Flask
from flask import current_app
from flask import has_app_context

from ..exceptions import ConfigurationError
from ..exceptions import StoreError
from ..inbox import Delivery
from ..schemas.loading import Loaded
from .dispatcher import Dispatcher
from .dispatcher import Policy
from .modes import MODES
from .modes import Context
from .modes import Mode
from .owners import new_owner
from .runner import Runner

__all__ = [
    "TASK",
    "TASK_BATCH",
    "Celery",
    "CeleryPolicy",
    "celery_app_of",
    "dispatch_task",
    "relay",
    "relay_task",
    "tasks_for",
]

logger = logging.getLogger("flask_posweb")

#: The name of the task registered on the host's Celery app.
TASK = "flask_posweb.dispatch"
RELAY_TASK = "flask_posweb.relay"
#: Deliveries sent per relay pass (each pass runs again while it finds a full batch).
RELAY_BATCH = 500

#: A delivery to send a task for: its id, and its merchant (for routing).
Sent = tuple[int, "str | None"]


class CeleryPolicy(Policy, t.Protocol):
    """What Celery mode reads of an app's settings, besides :class:`~.dispatcher.Policy`."""

    @property
    def celery_publish_timeout(self) -> float: ...
    @property
    def celery_requeue_after(self) -> float: ...
    @property
    def celery_relay(self) -> bool: ...


#: The dispatchers in this mode in this process, to find the one a task is for.
_SERVED: weakref.WeakKeyDictionary[Dispatcher, Celery] = weakref.WeakKeyDictionary()


def celery_app_of(app: Flask) -> CeleryApp:
    """The Celery app of ``app``: ``POSWEB_CELERY_APP``, else ``app.extensions["celery"]``
    (Flask's pattern), looked up when first needed.

    :raises ConfigurationError: there is none.
    """
    found = app.config.get("POSWEB_CELERY_APP") or app.extensions.get("celery")
    if not isinstance(found, CeleryApp):
        raise ConfigurationError(
            "POSWEB_DISPATCH = 'celery' needs a Celery app: set app.extensions['celery'] "
            "(Flask's celery_init_app pattern) or POSWEB_CELERY_APP."
        )
    return found


def _served(celery_app: CeleryApp, inbox: str) -> tuple[Dispatcher, Celery]:
    """The dispatcher a task is for: the current app's when the task runs in its
    context (Flask's ``FlaskTask`` pattern), else the one in this mode whose
    Celery app and inbox match."""
    current = t.cast(Flask, current_app._get_current_object()) if has_app_context() else None  # type: ignore[attr-defined]
    served = sorted(_SERVED.items(), key=lambda item: item[0].app is not current)
    for dispatcher, mode in served:
        if dispatcher.inbox.name != inbox:
            continue
        try:
            if celery_app_of(dispatcher.app) is celery_app:
                return dispatcher, mode
        except ConfigurationError:
            continue
    raise RuntimeError(
        f"No Flask app with Flask-PosWeb's inbox {inbox!r} in Celery dispatch on this Celery "
        "app: the worker must import the module that creates the Flask app."
    )


def _dispatch(
    task: t.Any,
    delivery_id: int,
    inbox: str = "default",
    merchant: str | None = None,
    also: Sequence[int] = (),
) -> str | None:
    """Dispatch one stored delivery (see :func:`~flask_posweb.dispatch.dispatch_delivery`),
    and the merchant's deliveries ``also`` after it, one at a time.

    No Celery retry: a failed delivery is due again in the inbox after its
    backoff, and the relay sends its task then. A worker that dies midway has
    the task again (late acknowledgement): the deliveries already finished are
    not dispatchable any more, and are passed over.

    :param merchant: whose deliveries they are: for the host's Celery router
        only (``task_routes``), which may give merchants queues of their own.
    :param also: more of the merchant's deliveries, sent in the same task
        when they were stored together (see :data:`TASK_BATCH`).
    :returns: the first delivery's new status.
    """
    dispatcher, _ = _served(task.app, inbox)
    dispatcher.beat()  # a worker with these receivers is alive: see Dispatcher.beat
    owner = new_owner("task")
    with dispatcher.app.app_context():
        status = dispatcher.dispatch(delivery_id, owner)
        for other in also:
            dispatcher.dispatch(int(other), owner)
    return status


def _relay(task: t.Any, inbox: str = "default") -> int:
    """One relay pass (and retention, when due): for a Celery beat entry."""
    dispatcher, mode = _served(task.app, inbox)
    runner = _RELAY_RUNNERS.get(dispatcher)
    if runner is None:
        runner = _RELAY_RUNNERS[dispatcher] = Runner(dispatcher, work=mode.background_pass)
    return runner.one_pass()


_RELAY_RUNNERS: weakref.WeakKeyDictionary[Dispatcher, Runner] = weakref.WeakKeyDictionary()

# shared_task: registered on every Celery app of the process, whenever it is
# made (before or after the Flask app): a worker knows the task as soon as it
# has imported the module that creates the Flask app.
#: ``flask_posweb.dispatch(delivery_id, inbox, merchant=..., also=[...])``: late
#: acknowledgement, and requeued when the worker process running it dies.
dispatch_task = shared_task(
    name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)(_dispatch)
#: ``flask_posweb.relay(inbox)``: one relay pass, for a Celery beat entry.
relay_task = shared_task(name=RELAY_TASK, bind=True, ignore_result=True)(_relay)


#: Deliveries of one merchant that one task carries at most: under load the
#: broker is asked once per this many, not once per delivery (a task's publish
#: costs more than the delivery's store); few enough that the host's workers
#: share a burst between them.
TASK_BATCH = 20


def tasks_for(deliveries: Sequence[Sent]) -> list[tuple[str | None, list[int]]]:
    """The tasks that carry ``deliveries``: per merchant, in the order they came,
    at most :data:`TASK_BATCH` each; a merchant's first task goes where its
    first delivery was (one merchant's burst does not hold another's back)."""
    groups: dict[str | None, list[list[int]]] = {}
    order: list[tuple[str | None, list[int]]] = []
    for delivery_id, merchant in deliveries:
        chunks = groups.setdefault(merchant, [])
        if not chunks or len(chunks[-1]) >= TASK_BATCH:
            chunks.append([])
            order.append((merchant, chunks[-1]))
        chunks[-1].append(delivery_id)
    return order


class _Job:
    """Deliveries to send a task for, and whether someone waits for the outcome."""

    __slots__ = ("deliveries", "done", "error", "waited")

    def __init__(self, deliveries: list[Sent], waited: bool) -> None:
        self.deliveries, self.waited = deliveries, waited
        self.done = threading.Event()
        self.error: BaseException | None = None


class Publisher:
    """Sends tasks from one thread per process, in batches, on a connection of its own.

    A request does not wait for the broker: it queues its delivery and is
    answered (the delivery is committed; the task is only a wake-up call). The
    thread sends whatever is queued by then, one batch on one kept connection,
    whose socket waits are bounded by ``POSWEB_CELERY_PUBLISH_TIMEOUT``: a
    broker that refuses, or accepts and never answers, fails the batch in about
    that time. A batch that failed is marked unsent, so that the relay sends it
    once the broker is back, and for a moment nothing more is queued (requests
    mark theirs unsent at once). The relay waits for its own batches.
    """

    #: Deliveries a batch sends at most.
    BATCH = 500
    #: Seconds the thread waits, after a request's delivery, for others to send
    #: with it: what a task's dispatch may wait, never a request.
    LINGER = 0.01
    #: Jobs queued at most: past it, a request leaves its delivery to the relay.
    MAX_QUEUED = 10_000

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = weakref.ref(dispatcher)
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pid = -1
        self._failing_until = 0.0

    def send(self, deliveries: list[Sent], *, wait: bool = False) -> bool:
        """Ask the host's workers to dispatch these deliveries.

        :param wait: wait until the broker took them (the relay); otherwise
            (a request) they are queued for the thread.
        :returns: whether they were sent (queued, without ``wait``); ``False``
            leaves them to the caller to mark unsent.
        """
        dispatcher = self._dispatcher()
        if dispatcher is None or not deliveries or self.failing():
            return False  # the broker failed moments ago: the relay catches up
        if self._jobs.qsize() >= self.MAX_QUEUED:
            return False
        self._ensure_thread()
        job = _Job(deliveries, wait)
        self._jobs.put(job)
        if not wait:
            return True
        timeout = t.cast(CeleryPolicy, dispatcher.policy).celery_publish_timeout
        # A connection's set-up and one command, each bounded by the timeout.
        return job.done.wait(2 * timeout + 1) and job.error is None

    def failing(self) -> bool:
        """Whether the broker failed moments ago (sends are skipped meanwhile)."""
        return time.monotonic() < self._failing_until

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a forked child has no thread of its parent's
            self._pid = os.getpid()
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=self._loop, name="posweb-publish", daemon=True).start()

    def _loop(self) -> None:
        connection: t.Any = None
        jobs = self._jobs
        while True:
            batch = [jobs.get()]
            # A moment for the deliveries stored meanwhile: under load they go
            # in one task per merchant (see tasks_for), not one task each.
            until = time.monotonic() + self.LINGER
            while sum(len(job.deliveries) for job in batch) < self.BATCH:
                try:
                    batch.append(jobs.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            dispatcher = self._dispatcher()
            if dispatcher is None:
                return
            try:
                connection = self._publish(dispatcher, batch, connection)
            finally:
                del dispatcher

    def _publish(self, dispatcher: Dispatcher, batch: list[_Job], connection: t.Any) -> t.Any:
        """Send a batch on the kept connection (made if need be); the connection
        to keep (``None`` after a failure: the next batch makes a new one)."""
        timeout = t.cast(CeleryPolicy, dispatcher.policy).celery_publish_timeout
        try:
            celery_app = celery_app_of(dispatcher.app)
            task = celery_app.tasks[TASK]
            if connection is None:
                bounded = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
                connection = celery_app.connection_for_write(transport_options=bounded)
            deliveries = [sent for job in batch for sent in job.deliveries]
            for merchant, ids in tasks_for(deliveries):
                # No retry inside Celery: the relay is the retry. The merchant
                # travels for the host's router (and in a header, for others).
                kwargs: dict[str, t.Any] = {"merchant": merchant}
                if len(ids) > 1:
                    kwargs["also"] = ids[1:]
                task.apply_async(
                    (ids[0], dispatcher.inbox.name),
                    kwargs,
                    retry=False,
                    connection=connection,
                    headers={"posweb_merchant": merchant},
                )
        except Exception as exc:  # the broker's errors are many; all mean "not sent"
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.release()
            # Some may have been sent: sent again by the relay, they find their
            # deliveries taken or done, and are passed over.
            self._failed(dispatcher, batch, exc, timeout)
            return None
        for job in batch:
            job.done.set()
        return connection

    def _failed(
        self, dispatcher: Dispatcher, jobs: list[_Job], exc: BaseException, timeout: float
    ) -> None:
        """Not sent: for a moment nothing more is tried, and what was queued
        meanwhile fails with the batch (it would, one timeout at a time)."""
        self._failing_until = time.monotonic() + max(timeout, dispatcher.policy.poll_interval)
        while True:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        unsent = [d for job in jobs if not job.waited for d, _ in job.deliveries]
        count = sum(len(job.deliveries) for job in jobs)
        logger.warning(
            "Celery broker: %s %s not sent (%s: %s); the relay sends %s when it is back",
            count,
            "delivery" if count == 1 else "deliveries",
            type(exc).__name__,
            exc,
            "it" if count == 1 else "them",
        )
        if unsent:
            # Stamped as sent when stored: cleared, so that the relay sends them
            # at its next look once the broker is back, not a requeue later.
            with contextlib.suppress(StoreError):
                dispatcher.inbox.mark_unsent(unsent)
        for job in jobs:
            job.error = exc
            job.done.set()


def relay(dispatcher: Dispatcher, mode: Celery) -> int:
    """Send tasks for due deliveries that no task is known to be on its way for;
    returns how many were sent. Bounded (batches of :data:`RELAY_BATCH`) and
    idempotent (see :meth:`~flask_posweb.inbox.Inbox.take_for_relay`)."""
    if mode.publisher(dispatcher).failing():
        return 0  # taking deliveries now would only stamp them, and clear the stamps again
    policy = t.cast(CeleryPolicy, dispatcher.policy)
    sent = 0
    while True:
        due = dispatcher.inbox.take_for_relay(
            dispatcher.acceptable(), policy.celery_requeue_after, RELAY_BATCH
        )
        if not due or not mode.send(dispatcher, due, wait=True):
            return sent
        sent += len(due)
        if len(due) < RELAY_BATCH:
            return sent


class Celery(Mode):
    """Every attempt runs in the host's Celery workers; web processes store,
    send a task, and relay (see the module docstring)."""

    name = "celery"
    enqueues_at_store = True

    def __init__(self) -> None:
        self._publishers: weakref.WeakKeyDictionary[Dispatcher, Publisher] = (
            weakref.WeakKeyDictionary()
        )

    def setup(self, dispatcher: Dispatcher) -> None:
        _SERVED[dispatcher] = self

    def runs_background(self, policy: Policy) -> bool:
        return t.cast(CeleryPolicy, policy).celery_relay

    def publisher(self, dispatcher: Dispatcher) -> Publisher:
        found = self._publishers.get(dispatcher)
        if found is None:
            found = self._publishers[dispatcher] = Publisher(dispatcher)
        return found

    def send(self, dispatcher: Dispatcher, deliveries: list[Sent], *, wait: bool = False) -> bool:
        """Send the tasks of these deliveries (queue them, unless ``wait``);
        ``True`` once they are on their way."""
        if self.publisher(dispatcher).send(deliveries, wait=wait):
            return True
        # They were stamped as sent when stored (or taken by the relay): clear
        # the stamp, so the relay sends them once the broker is back, not a
        # POSWEB_CELERY_REQUEUE_AFTER later. Failing that, the stamp only delays.
        with contextlib.suppress(StoreError):
            dispatcher.inbox.mark_unsent([delivery_id for delivery_id, _ in deliveries])
        return False

    def stored(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        self.send(context.dispatcher, [(delivery.id, delivery.merchant)])

    def repeated(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        inbox = context.dispatcher.inbox
        if delivery.status in ("failed", "dead"):
            inbox.repeat(delivery.id)
        if delivery.status in ("failed", "dead", "pending"):
            # A duplicate task is harmless.
            self.send(context.dispatcher, [(delivery.id, delivery.merchant)])

    def background_pass(self, runner: Runner) -> int:
        return relay(runner.dispatcher, self)


MODES[Celery.name] = Celery
