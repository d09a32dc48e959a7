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
- Nothing depends on the broker being up. Sending waits at most
  ``POSWEB_CELERY_PUBLISH_TIMEOUT`` (about a second), then the webhook is
  answered 200 all the same: it is stored. The relay sends a task again for a
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

from celery import Celery as CeleryApp
from celery import shared_task
from flask import Flask
from flask import current_app
from flask import has_app_context

from ..exceptions import ConfigurationError
from ..exceptions import StoreError
from ..inbox import Delivery
from ..schemas.loading import Loaded
from . import dispatch_delivery
from .modes import MODES
from .modes import Mode

if t.TYPE_CHECKING:
    from ..config import Settings
    from ..state import PosWebState
    from .runner import Runner

__all__ = ["TASK", "Celery", "celery_app_of", "dispatch_task", "relay", "relay_task"]

logger = logging.getLogger("flask_posweb")

#: The name of the task registered on the host's Celery app.
TASK = "flask_posweb.dispatch"
RELAY_TASK = "flask_posweb.relay"
#: Deliveries sent per relay pass (each pass runs again while it finds a full batch).
RELAY_BATCH = 500

#: Apps in this mode in this process, to find the app a task is for.
_APPS: weakref.WeakSet[Flask] = weakref.WeakSet()


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


def _app_for(celery_app: CeleryApp, inbox: str) -> Flask:
    """The Flask app a task is for: the current app when the task runs in its
    context (Flask's ``FlaskTask`` pattern), else the app in this mode whose
    Celery app and inbox match."""
    from ..state import get_state

    candidates = [t.cast(Flask, current_app._get_current_object())] if has_app_context() else []  # type: ignore[attr-defined]
    candidates += list(_APPS)
    for app in candidates:
        if "posweb" not in app.extensions or get_state(app).settings.inbox_name != inbox:
            continue
        try:
            if celery_app_of(app) is celery_app:
                return app
        except ConfigurationError:
            continue
    raise RuntimeError(
        f"No Flask app with Flask-PosWeb's inbox {inbox!r} in Celery dispatch on this Celery "
        "app: the worker must import the module that creates the Flask app."
    )


def _dispatch(task: t.Any, delivery_id: int, inbox: str = "default") -> str | None:
    """Dispatch one stored delivery (see :func:`~flask_posweb.dispatch.dispatch_delivery`).

    No Celery retry: a failed delivery is due again in the inbox after its
    backoff, and the relay sends its task then.
    """
    return dispatch_delivery(_app_for(task.app, inbox), delivery_id)


def _relay(task: t.Any, inbox: str = "default") -> int:
    """One relay pass (and retention, when due): for a Celery beat entry."""
    from ..state import get_state
    from .runner import Runner

    state = get_state(_app_for(task.app, inbox))
    runner = _RELAY_RUNNERS.get(state)
    if runner is None:
        runner = _RELAY_RUNNERS[state] = Runner(state, relay=True)
    return runner.one_pass()


_RELAY_RUNNERS: weakref.WeakKeyDictionary[PosWebState, Runner] = weakref.WeakKeyDictionary()

# shared_task: registered on every Celery app of the process, whenever it is
# made (before or after the Flask app): a worker knows the task as soon as it
# has imported the module that creates the Flask app.
#: ``flask_posweb.dispatch(delivery_id, inbox)``: late acknowledgement, and
#: requeued when the worker process running it dies.
dispatch_task = shared_task(
    name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)(_dispatch)
#: ``flask_posweb.relay(inbox)``: one relay pass, for a Celery beat entry.
relay_task = shared_task(name=RELAY_TASK, bind=True, ignore_result=True)(_relay)


class Publisher:
    """Sends tasks from one thread per process, waiting a bounded time for each.

    A broker that is down or hangs costs a request at most the publish timeout;
    while it keeps failing, requests do not wait for it at all (the relay sends
    their tasks once it is back).
    """

    def __init__(self, state: PosWebState) -> None:
        self._state = weakref.ref(state)
        self._jobs: queue.Queue[tuple[list[int], threading.Event, list[BaseException]]] = (
            queue.Queue()
        )
        self._pid = -1
        self._failing_until = 0.0

    def send(self, delivery_ids: list[int]) -> bool:
        """Ask the host's workers to dispatch these deliveries; ``True`` once the
        broker took the tasks within the timeout."""
        state = self._state()
        if state is None or not delivery_ids:
            return False
        if self.failing():
            return False  # the broker failed moments ago: the relay catches up
        self._ensure_thread()
        done, errors = threading.Event(), t.cast(list[BaseException], [])
        self._jobs.put((delivery_ids, done, errors))
        timeout = state.settings.celery_publish_timeout
        if done.wait(timeout) and not errors:
            return True
        self._failing_until = time.monotonic() + max(timeout, state.settings.poll_interval)
        reason = errors[0] if errors else f"no answer within {timeout:g} s"
        count = len(delivery_ids)
        logger.warning(
            "Celery broker: %s %s not sent (%s); the relay sends %s when it is back",
            count,
            "delivery" if count == 1 else "deliveries",
            reason,
            "it" if count == 1 else "them",
        )
        return False

    def failing(self) -> bool:
        """Whether the broker failed moments ago (sends are skipped meanwhile)."""
        return time.monotonic() < self._failing_until

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a forked child has no thread of its parent's
            self._pid = os.getpid()
            self._jobs = queue.Queue()
            threading.Thread(target=self._loop, name="posweb-publish", daemon=True).start()

    def _loop(self) -> None:
        while True:
            delivery_ids, done, errors = self._jobs.get()
            state = self._state()
            if state is None:
                return
            try:
                task = celery_app_of(state.app).tasks[TASK]
                for delivery_id in delivery_ids:
                    # No retry inside Celery: the relay is the retry.
                    task.apply_async((delivery_id, state.settings.inbox_name), retry=False)
            except Exception as exc:  # the broker's errors are many; all mean "not sent"
                errors.append(exc)
            finally:
                del state
                done.set()


def relay(state: PosWebState) -> int:
    """Send tasks for due deliveries that no task is known to be on its way for;
    returns how many were sent. Bounded (batches of :data:`RELAY_BATCH`) and
    idempotent (see :meth:`~flask_posweb.inbox.Inbox.take_for_relay`)."""
    inbox, dispatcher = state.require_inbox(), state.require_dispatcher()
    mode = t.cast(Celery, state.mode)
    if mode.publisher(state).failing():
        return 0  # taking deliveries now would only stamp them, and clear the stamps again
    sent = 0
    while True:
        ids = inbox.take_for_relay(
            dispatcher.acceptable(), state.settings.celery_requeue_after, RELAY_BATCH
        )
        if not ids or not mode.send(state, ids):
            return sent
        sent += len(ids)
        if len(ids) < RELAY_BATCH:
            return sent


class Celery(Mode):
    """Every attempt runs in the host's Celery workers; web processes store,
    send a task, and relay (see the module docstring)."""

    name = "celery"
    enqueues_at_store = True

    def __init__(self) -> None:
        self._publishers: weakref.WeakKeyDictionary[PosWebState, Publisher] = (
            weakref.WeakKeyDictionary()
        )

    def setup(self, state: PosWebState) -> None:
        _APPS.add(state.app)

    def runs_background(self, settings: Settings) -> bool:
        return settings.celery_relay

    def publisher(self, state: PosWebState) -> Publisher:
        found = self._publishers.get(state)
        if found is None:
            found = self._publishers[state] = Publisher(state)
        return found

    def send(self, state: PosWebState, delivery_ids: list[int]) -> bool:
        """Send the tasks of these deliveries; ``True`` once the broker took them."""
        if self.publisher(state).send(delivery_ids):
            return True
        # They were stamped as sent when stored (or taken by the relay): clear
        # the stamp, so the relay sends them once the broker is back, not a
        # POSWEB_CELERY_REQUEUE_AFTER later. Failing that, the stamp only delays.
        with contextlib.suppress(StoreError):
            state.require_inbox().mark_unsent(delivery_ids)
        return False

    def stored(self, state: PosWebState, delivery: Delivery, loaded: Loaded) -> None:
        self.send(state, [delivery.id])

    def repeated(self, state: PosWebState, delivery: Delivery, loaded: Loaded) -> None:
        inbox = state.require_inbox()
        if delivery.status in ("failed", "dead"):
            inbox.repeat(delivery.id)
        if delivery.status in ("failed", "dead", "pending"):
            self.send(state, [delivery.id])  # a duplicate task is harmless

    def background_pass(self, runner: Runner) -> int:
        return relay(runner.state)


MODES[Celery.name] = Celery
