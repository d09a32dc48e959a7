"""Throttling failed token requests with the host's Flask-Limiter.

Guessing client secrets at the token URL is the one thing an unauthenticated
caller can try over and over. When the app has a Flask-Limiter ``Limiter``,
failed token requests count against ``POSWEB_TOKEN_RATE_LIMIT`` per client
address, in the limiter's own storage (memory, Redis...) and with its own
strategy; past it, the token URL answers 429 until the window passes. Without
one, setup logs a warning: we do not write a limiter of our own.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import time
import typing as t

from flask import Flask
from flask import request

from ..exceptions import OAuthError
from ..state import PosWebState

__all__ = ["Throttle", "token_throttle", "warn_if_unthrottled"]

logger = logging.getLogger("flask_posweb")

_SCOPE = "flask-posweb.token"


class Throttle:
    """Failed token requests, counted per client address by a Flask-Limiter limiter."""

    def __init__(self, limiter: t.Any, limit: str) -> None:
        from limits import parse  # Flask-Limiter's own dependency

        self.strategy = limiter.limiter
        self.item = parse(limit)
        self.limit = limit

    def check(self) -> None:
        """:raises OAuthError: 429 while this address is over the limit."""
        key = request.remote_addr or "-"
        if not self.strategy.test(self.item, _SCOPE, key):
            reset = self.strategy.get_window_stats(self.item, _SCOPE, key).reset_time
            raise OAuthError(
                "invalid_request",
                "Too many failed token requests; retry later.",
                429,
                retry_after=max(1, int(reset - time.time())),
            )

    def failed(self) -> None:
        """Count one failed request of this address."""
        self.strategy.hit(self.item, _SCOPE, request.remote_addr or "-")


def _limiter(app: Flask) -> t.Any | None:
    found = app.extensions.get("limiter")
    return next(iter(found), None) if found else None


def token_throttle(state: PosWebState) -> Throttle | None:
    """The throttle of ``state``'s app, or ``None`` without Flask-Limiter.

    Looked up at each token request (a few an hour), so a ``Limiter`` set up
    after the blueprint counts too.
    """
    limiter = _limiter(state.app)
    return None if limiter is None else Throttle(limiter, state.settings.token_rate_limit)


def warn_if_unthrottled(state: PosWebState) -> None:
    """At setup: OAuth is on and nothing will slow down a secret-guessing caller."""
    if state.tokens is not None and _limiter(state.app) is None:
        logger.warning(
            "The OAuth token URL is not throttled: register Flask-Limiter on the app "
            "(Limiter(get_remote_address, app=app)) to limit failed token requests to %s "
            "per address (POSWEB_TOKEN_RATE_LIMIT).",
            state.settings.token_rate_limit,
        )
