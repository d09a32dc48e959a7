"""What Flask-PosWeb keeps for one app, at ``app.extensions["posweb"]``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import current_app

from .config import Settings
from .dispatch.dispatcher import Dispatcher
from .dispatch.modes import MODES
from .dispatch.modes import Mode
from .dispatch.runner import BackgroundRunner
from .exceptions import ConfigurationError
from .inbox import Inbox
from .loyalty.memory import LoyaltyMemory

if t.TYPE_CHECKING:
    from .extension import PosWeb
    from .web.throttle import Throttle

__all__ = ["PosWebState", "get_state"]


class PosWebState:
    """The settings, inbox and dispatchers of one app.

    :param extension: the :class:`~flask_posweb.PosWeb` whose blueprint was registered.
    """

    def __init__(self, extension: PosWeb, app: Flask, settings: Settings) -> None:
        self.extension = extension
        self.app = app
        self.settings = settings
        self.mode: Mode = _mode(settings.dispatch)()
        self.inbox: Inbox | None = None
        self.dispatcher: Dispatcher | None = None
        self.loyalty: LoyaltyMemory | None = None
        self.background: BackgroundRunner | None = None
        #: Failed token requests, when the app has Flask-Limiter (see ``web/throttle.py``).
        self.throttle: Throttle | None = None
        #: Where the blueprint is mounted on this app; requests under these
        #: prefixes that match no route are answered in JSON.
        self.prefixes: list[str] = []
        #: Under these, routing errors are left to the host (HTML pages of ours).
        self.html_prefixes: list[str] = []
        #: Whether a request has looked for an app-wide CSRF protection set up
        #: after the blueprint (see :func:`~flask_posweb.web.views.exempt_from_app_csrf`).
        self.csrf_checked = False
        if settings.inbox:
            # No URL with TESTING on: a private temporary file per app object.
            self.inbox = Inbox.from_url(
                settings.database_url or "sqlite://",
                timeout=settings.database_timeout,
                name=settings.inbox_name,
                duplicate_window=settings.duplicate_window,
            )
            self.dispatcher = Dispatcher(app, self.inbox, settings)
            self.loyalty = LoyaltyMemory(self.inbox)
            if self.mode.runs_background(settings) and not settings.testing:
                self.background = BackgroundRunner(self)
            self.mode.setup(self)

    @property
    def mounts(self) -> list[str]:
        """The names the blueprint is registered under in the app, first first
        (``posweb`` unless registered with ``name=``, or nested)."""
        ours = self.extension.blueprint
        return [name for name, bp in self.app.blueprints.items() if bp is ours]

    def endpoint(self, name: str) -> str:
        """The app's endpoint for the blueprint's ``name``, under its first
        registration: ``posweb.payment_created``, or ``shop.payment_created``."""
        return f"{self.mounts[0]}.{name}"

    def path(self, name: str) -> str:
        """The path of the blueprint's ``name`` below the app's root
        (``/dealpos/payment-created``), read from the URL map: no request
        needed, so neither ``TRUSTED_HOSTS`` nor ``APPLICATION_ROOT`` changes it.

        :raises KeyError: the blueprint has no such endpoint.
        """
        return next(self.app.url_map.iter_rules(self.endpoint(name))).rule

    def answers_for(self, path: str) -> bool:
        """Whether a request for ``path`` that matched no route is ours to answer."""

        def under(prefix: str) -> bool:
            return path == prefix or path.startswith(prefix.rstrip("/") + "/")

        return any(map(under, self.prefixes)) and not any(map(under, self.html_prefixes))

    def close(self) -> None:
        """Stop the background dispatcher and close the inbox's connections."""
        if self.background is not None:
            self.background.stop()
        if self.inbox is not None:
            self.inbox.close()

    def require_inbox(self) -> Inbox:
        """The inbox, for commands that need one.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.
        """
        if self.inbox is None:
            raise ConfigurationError("This needs the inbox: set POSWEB_INBOX = True.")
        return self.inbox

    def require_dispatcher(self) -> Dispatcher:
        """The dispatcher of stored deliveries.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.
        """
        self.require_inbox()
        assert self.dispatcher is not None
        return self.dispatcher

    def housekeep(self) -> dict[str, int]:
        """Apply every retention rule once (deliveries, duplicate scopes, loyalty answers)."""
        deleted = self.require_inbox().housekeep(self.settings.retention)
        assert self.loyalty is not None
        deleted["loyalty answers"] = self.loyalty.housekeep(self.settings.loyalty_retention)
        return deleted


def _mode(name: str) -> type[Mode]:
    if name == "celery" and name not in MODES:
        from .dispatch import celery  # noqa: F401  (registers the mode: imports Celery)
    return MODES[name]


def get_state(app: Flask | None = None) -> PosWebState:
    """The Flask-PosWeb state of ``app`` (default: the current app).

    :raises RuntimeError: the blueprint is not registered on the app.
    """
    app = app or t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return t.cast(PosWebState, app.extensions["posweb"])
    except KeyError:
        raise RuntimeError(
            "Flask-PosWeb is not set up on this app: call app.register_blueprint(posweb.blueprint)."
        ) from None
