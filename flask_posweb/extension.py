"""The extension object: ``PosWeb``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import difflib
import typing as t
import weakref

from blinker import NamedSignal
from flask import Flask
from flask.blueprints import BlueprintSetupState

from . import signals
from .config import DEFAULTS
from .config import read_settings
from .events import EVENTS
from .exceptions import ConfigurationError
from .exceptions import UnknownEventError
from .loyalty import Loyalty
from .state import PosWebState
from .views import create_blueprint

__all__ = ["PosWeb"]

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: Lifecycle signals a handler may subscribe to by name, besides the events.
LIFECYCLE = {
    name: signal
    for name, signal in vars(signals).items()
    if isinstance(signal, NamedSignal) and name not in EVENTS
}


class PosWeb:
    """DealPOS webhooks for a Flask app.

    Register :attr:`blueprint` on the app (the primary way in), or pass the app
    here or to :meth:`init_app`, which does the same::

        posweb = PosWeb()

        @posweb.on("payment_written_off")
        def record_write_off(sender, event, **extra): ...

        app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")

    Configuration is read from ``app.config`` when the blueprint is registered
    (see :data:`~flask_posweb.config.DEFAULTS`). One ``PosWeb`` may serve
    several apps; its handlers are connected to each of them, and only to them.

    .. versionadded:: 0.1
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._handlers: dict[str, list[t.Callable[..., t.Any]]] = collections.defaultdict(list)
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        #: Providers of DealPOS's loyalty calls (see :class:`~flask_posweb.loyalty.Loyalty`).
        self.loyalty = Loyalty()
        #: The blueprint: one ``POST`` endpoint per event, the token URL and the loyalty calls.
        self.blueprint = create_blueprint(self)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register :attr:`blueprint` on ``app`` under ``POSWEB_URL_PREFIX``."""
        prefix = app.config.get("POSWEB_URL_PREFIX", DEFAULTS["POSWEB_URL_PREFIX"])
        app.register_blueprint(self.blueprint, url_prefix=prefix)

    def on(self, name: str) -> t.Callable[[F], F]:
        """Connect the decorated function to the signal ``name`` of every app this
        extension serves. The function is returned unchanged.

        ``name`` is an event (``"payment_created"``) or a lifecycle signal
        (``"webhook_dead"``). Receivers are held strongly: one defined inside
        ``create_app()`` is not garbage-collected.

        :raises UnknownEventError: at decoration time, with the closest names.
        """
        signal = self._signal(name)

        def decorator(receiver: F) -> F:
            self._handlers[name].append(receiver)
            for app in list(self._apps):
                signal.connect(receiver, sender=app, weak=False)
            return receiver

        return decorator

    def _signal(self, name: str) -> NamedSignal:
        if name in EVENTS:
            return EVENTS[name].signal
        if name in LIFECYCLE:
            return LIFECYCLE[name]
        close = difflib.get_close_matches(name, [*EVENTS, *LIFECYCLE], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownEventError(
            f"Unknown DealPOS event or signal {name!r}.{hint} "
            "'flask posweb events' lists the events."
        )

    def _setup(self, state: BlueprintSetupState) -> None:
        """Set up an app on the blueprint's first registration there (``record_once``).

        In order: refuse a second extension, default every ``POSWEB_*`` key,
        check them (failing closed on credentials), keep the app's state in
        ``app.extensions["posweb"]`` and connect this extension's handlers.
        """
        app = t.cast(Flask, state.app)
        if "posweb" in app.extensions:
            raise ConfigurationError("Flask-PosWeb is already set up on this app.")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = read_settings(app.config, app.instance_path)
        app.extensions["posweb"] = PosWebState(self, app, settings)
        for name, receivers in self._handlers.items():
            for receiver in receivers:
                self._signal(name).connect(receiver, sender=app, weak=False)
        self._apps.add(app)
