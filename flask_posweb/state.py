"""What Flask-PosWeb keeps for one app, at ``app.extensions["posweb"]``.

Built once, when the extension is set up on the app (see
:meth:`~flask_posweb.PosWeb.init_app`), from the app's settings: who may post
(the authenticator), the inbox and the app's dispatch. Nothing changes it
afterwards; where the blueprint is mounted is read from the app's URL map.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping

from flask import Blueprint
from flask import Flask
from flask import current_app
from werkzeug.routing import Rule

from .auth.credentials import CachedLookup
from .auth.credentials import Credentials
from .auth.tokens import TokenAuthority
from .auth.verification import Authenticator
from .auth.verification import Mode as AuthMode
from .config import Settings
from .dispatch.dispatcher import Dispatcher
from .dispatch.modes import MODES
from .dispatch.modes import Mode
from .dispatch.service import Dispatch
from .exceptions import ConfigurationError
from .metrics import Metrics
from .metrics import backend

if t.TYPE_CHECKING:
    from .inbox import Inbox

__all__ = ["PosWebState", "get_state"]

#: A loyalty call's provider: takes the call, returns the answer.
Provider = Callable[..., t.Any]


class PosWebState:
    """The settings, authenticator, inbox and dispatch of one app.

    :param blueprint: the blueprint whose registration set the app up.
    :param providers: the loyalty providers, by call name (live: one added
        later counts).
    """

    def __init__(
        self,
        app: Flask,
        blueprint: Blueprint,
        settings: Settings,
        *,
        providers: Mapping[str, Provider],
    ) -> None:
        self.app = app
        self.blueprint = blueprint
        self.settings = settings
        self.providers = providers
        #: Issues and reads access tokens; ``None`` when OAuth is off.
        self.tokens = (
            TokenAuthority(settings.signing_keys, settings.token_ttl) if settings.oauth else None
        )
        #: ``None`` only with ``POSWEB_NO_AUTH``.
        self.authenticator = None if settings.no_auth else _authenticator(settings, self.tokens)
        self.inbox: Inbox | None = _open_inbox(settings) if settings.inbox else None
        self.dispatch: Dispatch | None = None
        if self.inbox is not None:
            self.dispatch = Dispatch(
                app,
                self.inbox,
                settings,
                _mode(settings.dispatch),
                background=not settings.testing,
            )
        #: The app's metrics; ``None`` when ``POSWEB_METRICS`` is empty.
        self.metrics: Metrics | None = None
        if settings.metrics:
            self.metrics = Metrics(
                app,
                [backend(name) for name in settings.metrics],
                merchants=settings.metrics_merchants,
                mounts=lambda: self.mounts,
            )
            if self.inbox is not None:
                self.metrics.watch(self.inbox)

    # -- where the blueprint is --------------------------------------------------------

    @property
    def mounts(self) -> list[str]:
        """The names the blueprint is registered under in the app, first first
        (``posweb`` unless registered with ``name=``, or nested)."""
        return [name for name, bp in self.app.blueprints.items() if bp is self.blueprint]

    def endpoint(self, name: str) -> str:
        """The app's endpoint for the blueprint's ``name``, under its first
        registration: ``posweb.payment_created``, or ``shop.payment_created``."""
        return f"{self.mounts[0]}.{name}"

    def path(self, name: str, merchant: str | None = None) -> str:
        """The path of the blueprint's ``name`` below the app's root
        (``/dealpos/payment-created``), read from the URL map: no request
        needed, so neither ``TRUSTED_HOSTS`` nor ``APPLICATION_ROOT`` changes it.

        :param merchant: fills the prefix's ``<merchant>`` when it has one.
        :raises KeyError: the blueprint has no such endpoint.
        :raises ValueError: the path needs a merchant, and none was given.
        """
        rule = self._rule(name)
        if "merchant" not in rule.arguments:
            return rule.rule
        if merchant is None:
            raise ValueError(f"{rule.rule!r} is a merchant's: say which merchant.")
        adapter = self.app.url_map.bind("localhost", script_name="/")
        return adapter.build(rule.endpoint, {"merchant": merchant})

    @property
    def per_merchant(self) -> bool:
        """Whether the blueprint is mounted with a ``<merchant>`` in its prefix."""
        return "merchant" in self._rule("oauth_token").arguments

    def _rule(self, name: str) -> Rule:
        try:
            return next(self.app.url_map.iter_rules(self.endpoint(name)))
        except (IndexError, StopIteration, KeyError):
            raise KeyError(name) from None

    def prefixes(self) -> Iterator[str]:
        """Where the blueprint is mounted: each registration's URL prefix, up to
        its first variable part (``/dealpos/`` for ``/dealpos/<merchant>``)."""
        suffix = "/oauth/token"  # a rule every registration has
        mounts = set(self.mounts)
        for rule in self.app.url_map.iter_rules():
            mount, _, endpoint = rule.endpoint.rpartition(".")
            if mount in mounts and endpoint == "oauth_token":
                yield rule.rule.removesuffix(suffix).partition("<")[0] or "/"

    # -- what it needs -----------------------------------------------------------------

    def require_inbox(self) -> Inbox:
        """The inbox, for commands that need one.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.
        """
        if self.inbox is None:
            raise ConfigurationError("This needs the inbox: set POSWEB_INBOX = True.")
        return self.inbox

    def require_dispatch(self) -> Dispatch:
        """The app's dispatch of stored deliveries.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.
        """
        self.require_inbox()
        assert self.dispatch is not None
        return self.dispatch

    def require_dispatcher(self) -> Dispatcher:
        """The dispatcher of stored deliveries.

        :raises ConfigurationError: ``POSWEB_INBOX`` is off.
        """
        return self.require_dispatch().dispatcher

    def close(self) -> None:
        """Stop the background dispatcher and close the inbox's connections."""
        if self.metrics is not None:
            self.metrics.close()
        if self.dispatch is not None:
            self.dispatch.close()
        if self.inbox is not None:
            self.inbox.close()


def _open_inbox(settings: Settings) -> Inbox:
    # Here, not at the top: only an app with an inbox imports SQLAlchemy.
    from .inbox.store import Inbox

    # No URL with TESTING on: a private temporary file per app object.
    return Inbox.from_url(
        settings.database_url or "sqlite://",
        timeout=settings.database_timeout,
        name=settings.inbox_name,
        duplicate_window=settings.duplicate_window,
    )


def _mode(name: str) -> Mode:
    if name == "celery" and name not in MODES:
        # Here, not at the top: only Celery mode imports Celery (it registers the mode).
        from .dispatch import celery  # noqa: F401
    return MODES[name]()


def _authenticator(settings: Settings, tokens: TokenAuthority | None) -> Authenticator:
    """The app's own credentials, the merchants' through the host's lookup (cached),
    and the modes they use: a lookup may answer any kind."""
    own = Credentials(
        None,
        api_keys=settings.api_keys,
        basic=settings.basic_auth,
        oauth_clients=settings.oauth_clients,
    )
    lookup = settings.credentials
    cached = (
        None
        if lookup is None
        else CachedLookup(lookup, settings.credentials_ttl, retry_after=settings.retry_after)
    )
    modes: list[AuthMode] = []
    if settings.api_keys or lookup:
        modes.append("api_key")
    if settings.basic_auth or lookup:
        modes.append("basic")
    if tokens is not None:
        modes.append("bearer")
    return Authenticator(own, cached, modes, api_key_header=settings.api_key_header, tokens=tokens)


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
