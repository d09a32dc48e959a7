"""The extension object: ``PosWeb``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import difflib
import inspect
import typing as t
import weakref

from blinker import NamedSignal
from flask import Flask
from flask.blueprints import BlueprintSetupState

from . import signals
from .config import DEFAULTS
from .config import read_settings
from .dashboard import register_dashboard
from .dispatch.receivers import NAME_ATTRIBUTE
from .events import EVENTS
from .exceptions import ConfigurationError
from .exceptions import UnknownEventError
from .inbox import Inbox
from .loyalty import Loyalty
from .state import PosWebState
from .state import get_state
from .web.throttle import warn_if_unthrottled
from .web.views import create_blueprint
from .web.views import exempt_from_app_csrf

__all__ = ["PosWeb"]

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: Lifecycle signals a handler may subscribe to by name, besides the events.
LIFECYCLE: dict[str, NamedSignal] = {name: getattr(signals, name) for name in signals.KEYWORDS}


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

    @property
    def inbox(self) -> Inbox:
        """The inbox of the current app: read deliveries (``counts()``,
        ``list()``, ``get(id)``), replay them.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.

        .. versionadded:: 0.2
        """
        return get_state().require_inbox()

    def on(self, signal_name: str, *, name: str | None = None) -> t.Callable[[F], F]:
        """Connect the decorated function to the signal ``signal_name`` of every
        app this extension serves. The function is returned unchanged.

        ``signal_name`` is an event (``"payment_created"``) or a lifecycle signal
        (``"webhook_dead"``). Receivers are held strongly: one defined inside
        ``create_app()`` is not garbage-collected.

        :param name: the receiver's name in the inbox's records (default: its
            qualified name). Outcomes are kept per name, so a retry re-runs
            only the receivers that failed.
        :raises UnknownEventError: at decoration time, with the closest names.
        :raises TypeError: at decoration time, when the function cannot take
            the sender and the signal's keyword arguments.
        """
        signal = self._signal(signal_name)
        keywords = signals.KEYWORDS.get(signal_name, ("event",))

        def decorator(receiver: F) -> F:
            _check_signature(receiver, signal_name, keywords)
            if name is not None:
                setattr(receiver, NAME_ATTRIBUTE, name)
            self._handlers[signal_name].append(receiver)
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
        ``app.extensions["posweb"]``, connect this extension's handlers, let
        the webhooks past an app-wide ``CSRFProtect`` and mount the delivery
        log page when ``POSWEB_DASHBOARD`` is on.
        """
        app = t.cast(Flask, state.app)
        if "posweb" in app.extensions:
            raise ConfigurationError("Flask-PosWeb is already set up on this app.")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = read_settings(app.config, app.instance_path)
        posweb_state = PosWebState(self, app, settings)
        app.extensions["posweb"] = posweb_state
        for name, receivers in self._handlers.items():
            for receiver in receivers:
                self._signal(name).connect(receiver, sender=app, weak=False)
        self._apps.add(app)
        warn_if_unthrottled(posweb_state)
        exempt_from_app_csrf(posweb_state)
        if settings.dashboard is not None:
            register_dashboard(posweb_state, state.url_prefix or "")

    def _mounted(self, state: BlueprintSetupState) -> None:
        """Remember where the blueprint is mounted (every registration)."""
        get_state(t.cast(Flask, state.app)).prefixes.append(state.url_prefix or "/")


def _check_signature(
    receiver: t.Callable[..., t.Any], signal: str, keywords: tuple[str, ...]
) -> None:
    """Fail at decoration, not at the first delivery: a receiver is called as
    ``receiver(app, **keywords)`` (and should take ``**extra`` for later ones)."""
    try:
        parameters = inspect.signature(receiver)
    except (TypeError, ValueError):  # a builtin or a C callable: trust it
        return
    try:
        parameters.bind(object(), **dict.fromkeys(keywords))
    except TypeError:
        listed = ", ".join(keywords)
        raise TypeError(
            f"{getattr(receiver, '__qualname__', receiver)!r} cannot receive {signal!r}: a "
            f"receiver is called with the sender and the keyword arguments {listed}; "
            f"define it as def {getattr(receiver, '__name__', 'receiver')}"
            f"(sender, {listed}, **extra)."
        ) from None
