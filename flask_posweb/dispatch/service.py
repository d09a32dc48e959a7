"""One app's dispatch: its dispatcher, its mode, and its background thread.

What the edge hands a delivery to once it is stored (:meth:`Dispatch.stored`),
and what the commands drive. It is the :class:`~.modes.Context` the mode acts
on; the app's state keeps one.

.. versionadded:: 0.3
"""

from __future__ import annotations

import typing as t

from ..inbox import Delivery
from ..schemas.loading import Loaded
from .dispatcher import Dispatcher
from .dispatcher import Policy
from .modes import Mode
from .runner import BackgroundRunner
from .runner import Runner

if t.TYPE_CHECKING:
    from flask import Flask

    from ..inbox import Inbox

__all__ = ["Dispatch"]


class Dispatch:
    """Where and when one app's receivers run (``POSWEB_DISPATCH``).

    :param mode: the dispatch mode (see :mod:`.modes`).
    :param background: whether web processes may run the background thread
        (not with ``TESTING`` on); the mode decides whether they do.
    """

    def __init__(
        self, app: Flask, inbox: Inbox, policy: Policy, mode: Mode, *, background: bool = True
    ) -> None:
        #: Takes and runs deliveries, records their outcomes.
        self.dispatcher = Dispatcher(app, inbox, policy)
        self.mode = mode
        #: The web process's background thread, if it runs one.
        self.background = (
            BackgroundRunner(self.dispatcher, mode.background_pass)
            if background and mode.runs_background(policy)
            else None
        )
        mode.setup(self.dispatcher)

    def wake(self) -> None:
        """Have the background thread look for due deliveries now."""
        if self.background is not None:
            self.background.wake()

    @property
    def defers(self) -> bool:
        """Whether outcomes may be deferred: the background thread runs in this
        process, and settles them."""
        return self.background is not None and self.background.running

    def settle_soon(self) -> None:
        """Have the background thread settle deferred outcomes shortly."""
        if self.background is not None:
            self.background.settle_soon()

    def ensure_running(self) -> None:
        """Start the background thread in this process if it should run and does not
        (at every request: the first one after a start or a fork starts it)."""
        if self.background is not None and not self.background.running:
            self.background.ensure_started()

    def stored(self, delivery: Delivery, loaded: Loaded) -> None:
        """A new delivery was committed: the mode runs it, sends it, or wakes a dispatcher."""
        self.mode.stored(self, delivery, loaded)

    def repeated(self, delivery: Delivery, loaded: Loaded) -> None:
        """DealPOS sent the body of a stored delivery again
        (see :data:`~flask_posweb.inbox.states.REPEAT`)."""
        self.mode.repeated(self, delivery, loaded)

    def runner(self, owner: str | None = None, *, relay: bool = False) -> Runner:
        """A runner that dispatches due deliveries here, or with ``relay`` (Celery
        mode) does the mode's background work instead: sends their tasks."""
        return Runner(self.dispatcher, owner, work=self.mode.background_pass if relay else None)

    def close(self) -> None:
        """Stop the background thread."""
        if self.background is not None:
            self.background.stop()
