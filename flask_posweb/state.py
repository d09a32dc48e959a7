"""What Flask-PosWeb keeps for one app, at ``app.extensions["posweb"]``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import current_app

from .config import Settings
from .dispatch import Dispatcher
from .exceptions import ConfigurationError
from .inbox import Inbox
from .runner import BackgroundRunner

if t.TYPE_CHECKING:
    from .extension import PosWeb

__all__ = ["PosWebState", "get_state"]


class PosWebState:
    """The settings, inbox and dispatchers of one app.

    :param extension: the :class:`~flask_posweb.PosWeb` whose blueprint was registered.
    """

    def __init__(self, extension: PosWeb, app: Flask, settings: Settings) -> None:
        self.extension = extension
        self.app = app
        self.settings = settings
        self.inbox: Inbox | None = None
        self.dispatcher: Dispatcher | None = None
        self.background: BackgroundRunner | None = None
        if settings.inbox:
            self.inbox = Inbox.from_url(
                settings.database_url,
                settings.database_timeout,
                rejected_max_count=settings.rejected_max_count,
                rejected_max_age=settings.rejected_max_age,
            )
            self.dispatcher = Dispatcher(app, self.inbox, settings)
            if settings.dispatch != "worker":
                self.background = BackgroundRunner(self)

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
