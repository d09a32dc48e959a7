"""Dispatch modes (``POSWEB_DISPATCH``): where receivers run after a delivery is stored.

Each mode answers three questions the same way for every delivery: what
happens once a new delivery is committed, what happens when DealPOS sends a
stored body again (a repeat, see :data:`~flask_posweb.inbox.states.REPEAT`),
and what the web processes' background dispatcher does, if they run one.
The receiving code asks the mode; it has no case of its own per mode.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import typing as t

from ..exceptions import StoreError
from ..inbox import Delivery
from ..schemas.loading import Loaded
from .dispatcher import Dispatcher
from .dispatcher import Policy
from .owners import new_owner
from .runner import Runner

__all__ = ["MODES", "Context", "Inline", "Mode", "Thread", "Worker"]

logger = logging.getLogger("flask_posweb")


class Context(t.Protocol):
    """What a mode acts on: one app's dispatch (see :class:`~.service.Dispatch`)."""

    @property
    def dispatcher(self) -> Dispatcher: ...

    def wake(self) -> None:
        """Have the background dispatcher, if there is one, look for due deliveries now."""

    @property
    def defers(self) -> bool:
        """Whether outcomes may be deferred: a background dispatcher runs here
        and settles them (see :meth:`.Dispatcher.settle`)."""

    def settle_soon(self) -> None:
        """Have the background dispatcher settle deferred outcomes shortly, if
        no commit of this process has carried them by then."""


class Mode:
    """Where receivers run. Subclasses override what differs."""

    name: t.ClassVar[str]
    #: Web processes run a background dispatcher (retries, orphaned deliveries).
    background: t.ClassVar[bool] = True
    #: The request leases the delivery it stores, to run it at once.
    leases_at_store: t.ClassVar[bool] = False
    #: A task engine is asked to dispatch each delivery right after its commit.
    enqueues_at_store: t.ClassVar[bool] = False

    def setup(self, dispatcher: Dispatcher) -> None:
        """Called once, when an app's dispatch is set up in this mode."""

    def runs_background(self, policy: Policy) -> bool:
        """Whether web processes run the background dispatcher."""
        return self.background

    def stored(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        """A new delivery was committed (its 200 is owed whatever happens here)."""
        context.wake()

    def repeated(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        """DealPOS sent the body of ``delivery`` again, within the duplicate window."""
        if delivery.status in ("failed", "dead"):
            context.dispatcher.inbox.repeat(delivery.id)
        context.wake()

    def background_pass(self, runner: Runner) -> int:
        """One pass of the background dispatcher: how many deliveries it handled."""
        return runner.drain()


class Inline(Mode):
    """The first attempt runs in the request, right after the commit; retries
    and orphaned deliveries in the web process's background thread."""

    name = "inline"
    leases_at_store = True

    def stored(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        assert delivery.locked_by is not None
        _run(context, delivery, delivery.locked_by, loaded)

    def repeated(self, context: Context, delivery: Delivery, loaded: Loaded) -> None:
        # Taken at once: failed, dead, or pending with its lease run out.
        dispatcher, owner = context.dispatcher, new_owner("request")
        claimed = dispatcher.inbox.claim(
            delivery.id, owner, dispatcher.policy.lease, dispatcher.acceptable(), repeat=True
        )
        if claimed is not None:
            _run(context, claimed, owner, loaded)


class Thread(Mode):
    """Every attempt runs in the web process's background thread; the request
    only stores."""

    name = "thread"


class Worker(Mode):
    """Every attempt runs in ``flask posweb worker`` processes; web processes
    only store and run no thread."""

    name = "worker"
    background = False


def _run(context: Context, delivery: Delivery, owner: str, loaded: Loaded) -> None:
    """Run the receivers in the request. The delivery is committed already, so
    whatever happens here the answer stays 200: failures are ours to retry.

    The outcome is deferred where a background dispatcher settles it: the
    request then takes the lock once, for its delivery, and the outcome goes
    with the process's next commit (the next delivery's, under load).
    """
    defer = context.defers
    try:
        context.dispatcher.run(delivery, owner, loaded.data, loaded.missing, defer=defer)
        if defer:
            context.settle_soon()
    except StoreError as exc:
        logger.warning(
            "Delivery %s: outcome not recorded (%s); it runs again later", delivery.id, exc
        )
    except Exception:
        logger.exception(
            "Delivery %s: dispatch failed; its lease will expire and it is retried", delivery.id
        )


#: Every mode by its ``POSWEB_DISPATCH`` name (the Celery mode registers itself
#: only when chosen, so that Celery is never imported otherwise).
MODES: dict[str, type[Mode]] = {mode.name: mode for mode in (Inline, Thread, Worker)}
