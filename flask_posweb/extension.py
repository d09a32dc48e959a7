"""The extension object, ``PosWeb``: the composition root.

It builds the blueprint from the faces (the webhooks, the loyalty calls, the
OpenAPI document, the commands) and sets an app up (:meth:`PosWeb.init_app`):
its settings, its state, the handlers connected to it, and the log page.

.. versionadded:: 0.1
"""

from __future__ import annotations

import collections
import difflib
import inspect
import re
import typing as t
import weakref

from blinker import NamedSignal
from flask import Blueprint
from flask import Flask
from flask.blueprints import BlueprintSetupState

from . import signals
from .auth.credentials import Lookup
from .calls import Loyalty
from .cli import register_commands
from .config import DEFAULTS
from .config import read_settings
from .dashboard import register_dashboard
from .dispatch.receivers import NAME_ATTRIBUTE
from .events import EVENTS
from .exceptions import ConfigurationError
from .exceptions import UnknownEventError
from .loyalty.views import register_loyalty_views
from .openapi.views import register_openapi
from .state import PosWebState
from .state import get_state
from .web.health import register_health
from .web.throttle import warn_if_unthrottled
from .web.views import exempt_from_app_csrf
from .web.views import register_webhooks

if t.TYPE_CHECKING:
    from .inbox import Inbox

__all__ = ["PosWeb"]

F = t.TypeVar("F", bound=t.Callable[..., t.Any])
L = t.TypeVar("L", bound=Lookup)

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

    Configuration is read from ``app.config`` when the app is set up (see
    :data:`~flask_posweb.config.DEFAULTS`). One ``PosWeb`` may serve several
    apps; its handlers are connected to each of them, and only to them.

    .. versionadded:: 0.1
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._handlers: dict[str, list[t.Callable[..., t.Any]]] = collections.defaultdict(list)
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._credentials: Lookup | None = None
        #: Providers of DealPOS's loyalty calls (see :class:`~flask_posweb.loyalty.Loyalty`).
        self.loyalty = Loyalty()
        #: The blueprint: one ``POST`` endpoint per event, the token URL and the loyalty calls.
        self.blueprint = self._create_blueprint()
        if app is not None:
            self.init_app(app)

    def _create_blueprint(self) -> Blueprint:
        """The blueprint, from the faces; a blueprint cannot change once registered."""
        bp = Blueprint("posweb", __name__)
        register_commands(bp)
        register_webhooks(bp)
        register_loyalty_views(bp, self.loyalty)
        register_openapi(bp)
        register_health(bp)
        bp.record_once(self._registered)
        return bp

    def init_app(self, app: Flask) -> None:
        """Set ``app`` up, then register :attr:`blueprint` on it under ``POSWEB_URL_PREFIX``.

        In order: refuse a second extension, default every ``POSWEB_*`` key,
        check them (failing closed on credentials), keep the app's state in
        ``app.extensions["posweb"]``, connect this extension's handlers, and
        let the webhooks past an app-wide ``CSRFProtect``. Registering the
        blueprint mounts the delivery log page when ``POSWEB_DASHBOARD`` is on.

        :raises ConfigurationError: the app is set up already, or its
            configuration is refused (the message says which key to set, and how).
        """
        self._set_up(app)
        app.register_blueprint(self.blueprint, url_prefix=app.config["POSWEB_URL_PREFIX"])

    @property
    def inbox(self) -> Inbox:
        """The inbox of the current app: read deliveries (``counts()``,
        ``list()``, ``get(id)``), replay them.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.

        .. versionadded:: 0.2
        """
        return get_state().require_inbox()

    def credentials(self, lookup: L) -> L:
        """Register the lookup of merchants' credentials, in the host's own store::

            @posweb.credentials
            def dealpos_credentials(query: CredentialQuery) -> Credentials | None:
                shop = Shop.query.filter_by(name=query.id).one_or_none() ...

        It is asked which merchant's credentials a request may carry (by the
        merchant's name, or by the presented API key's digest, Basic user or
        OAuth client), and its answers are cached for ``POSWEB_CREDENTIALS_TTL``.
        See :doc:`merchants`. Returns the function unchanged.

        :raises ConfigurationError: an app is set up already (register it first),
            or a lookup is registered already.

        .. versionadded:: 0.3
        """
        if list(self._apps):
            raise ConfigurationError(
                "Register the credentials lookup before an app is set up with this extension."
            )
        if self._credentials is not None:
            raise ConfigurationError("A credentials lookup is registered already: keep one.")
        self._credentials = lookup
        return lookup

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

    def _set_up(self, app: Flask) -> None:
        if "posweb" in app.extensions:
            raise ConfigurationError("Flask-PosWeb is already set up on this app.")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = read_settings(app.config, app.instance_path, credentials=self._credentials)
        state = PosWebState(app, self.blueprint, settings, providers=self.loyalty.providers)
        app.extensions["posweb"] = state
        for name, receivers in self._handlers.items():
            for receiver in receivers:
                self._signal(name).connect(receiver, sender=app, weak=False)
        self._apps.add(app)
        warn_if_unthrottled(state)
        exempt_from_app_csrf(app, self.blueprint)

    def _registered(self, setup: BlueprintSetupState) -> None:
        """The blueprint's first registration on an app (``record_once``): an
        app registered without :meth:`init_app` is set up now, the same way;
        then the log page is mounted below the blueprint's prefix."""
        app = t.cast(Flask, setup.app)
        if "posweb" not in app.extensions:
            self._set_up(app)
        state = get_state(app)
        if state.blueprint is not self.blueprint:
            raise ConfigurationError("Flask-PosWeb is already set up on this app.")
        prefix = setup.url_prefix or ""
        _check_prefix(prefix, state)
        if state.settings.dashboard is not None:
            # One page for every merchant: below the prefix's fixed part.
            register_dashboard(state, prefix.partition("<")[0])
        if state.settings.metrics_path is not None:
            _register_exposition(state, prefix.partition("<")[0] + state.settings.metrics_path)


def _register_exposition(state: PosWebState, path: str) -> None:
    """Serve the Prometheus exposition at ``path`` (one for every merchant)."""
    from .metrics.prometheus import exposition  # prometheus_client: only when served

    inbox = state.inbox

    def metrics() -> t.Any:
        """The app's metrics, for Prometheus to scrape (``POSWEB_METRICS_PATH``)."""
        return exposition(inbox)

    path = "/" + path.strip("/")
    state.app.add_url_rule(path, "posweb_metrics", metrics, methods=["GET"])


def _check_prefix(prefix: str, state: PosWebState) -> None:
    """Fail at registration: a prefix may name one variable, ``<merchant>``, and
    a URL per merchant needs the merchants' credentials."""
    variables = [name.rpartition(":")[2] for name in re.findall(r"<([^<>]+)>", prefix)]
    if any(name != "merchant" for name in variables):
        raise ConfigurationError(
            f"The URL prefix {prefix!r} names {variables}: the only variable it may name "
            "is <merchant> (one URL per merchant, /dealpos/<merchant>)."
        )
    if variables and state.settings.credentials is None and not state.settings.no_auth:
        raise ConfigurationError(
            f"The URL prefix {prefix!r} is per merchant, and there is no credentials lookup "
            "(POSWEB_CREDENTIALS or @posweb.credentials): the app's own credentials are "
            "no merchant's, so every request would be refused."
        )


def _check_signature(
    receiver: t.Callable[..., t.Any], signal: str, keywords: tuple[str, ...]
) -> None:
    """Fail at decoration, not at the first delivery: a receiver is called as
    ``receiver(app, **keywords)``, plus the extra ones it names (``merchant``),
    and should take ``**extra`` for later ones."""
    try:
        parameters = inspect.signature(receiver)
    except (TypeError, ValueError):  # a builtin or a C callable: trust it
        return
    named = [name for name in signals.EXTRA if name in parameters.parameters]
    try:
        parameters.bind(object(), **dict.fromkeys([*keywords, *named]))
    except TypeError:
        listed = ", ".join(keywords)
        raise TypeError(
            f"{getattr(receiver, '__qualname__', receiver)!r} cannot receive {signal!r}: a "
            f"receiver is called with the sender and the keyword arguments {listed}; "
            f"define it as def {getattr(receiver, '__name__', 'receiver')}"
            f"(sender, {listed}, **extra)."
        ) from None
