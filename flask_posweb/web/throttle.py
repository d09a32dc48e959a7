"""Limits through the host's Flask-Limiter: failed token requests, and each merchant's requests.

Guessing client secrets at the token URL is the one thing an unauthenticated
caller can try over and over. When the app has a Flask-Limiter ``Limiter``,
failed token requests count against ``POSWEB_TOKEN_RATE_LIMIT`` per client
address, in the limiter's own storage (memory, Redis...) and with its own
strategy; past it, the token URL answers 429 until the window passes.

With ``POSWEB_MERCHANT_RATE_LIMIT``, every authenticated request counts
against its merchant's limit (not its address: DealPOS posts every merchant's
webhooks from the same hosts); past it, 429 with ``Retry-After``, which
DealPOS retries once.

Without a ``Limiter``, setup logs a warning: we do not write a limiter of our own.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import time
import typing as t

from flask import Flask
from flask import request

from ..exceptions import OAuthError
from ..exceptions import TooManyRequestsError
from ..state import PosWebState

__all__ = [
    "MerchantLimit",
    "Throttle",
    "exempt_from_app_limits",
    "merchant_limit",
    "token_throttle",
    "warn_if_unthrottled",
]

logger = logging.getLogger("flask_posweb")

_SCOPE = "flask-posweb.token"
_MERCHANT_SCOPE = "flask-posweb.merchant"


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


class MerchantLimit:
    """Each merchant's requests, counted by a Flask-Limiter limiter."""

    def __init__(self, limiter: t.Any, limit: str) -> None:
        from limits import parse  # Flask-Limiter's own dependency (the throttle extra)

        self.strategy = limiter.limiter
        self.item = parse(limit)
        self.limit = limit

    def hit(self, merchant: str | None) -> None:
        """Count one request of ``merchant`` (``None``: the app's own).

        :raises TooManyRequestsError: past its limit.
        """
        key = merchant or "-"
        if not self.strategy.hit(self.item, _MERCHANT_SCOPE, key):
            reset = self.strategy.get_window_stats(self.item, _MERCHANT_SCOPE, key).reset_time
            raise TooManyRequestsError(
                f"More than {self.limit} from this merchant; retry later.",
                max(1, int(reset - time.time())),
            )


def merchant_limit(state: PosWebState) -> MerchantLimit | None:
    """The per-merchant limit of ``state``'s app, when it has one and a Flask-Limiter."""
    limit = state.settings.merchant_rate_limit
    limiter = _limiter(state.app) if limit is not None else None
    return None if limit is None or limiter is None else MerchantLimit(limiter, limit)


def _limiter(app: Flask) -> t.Any | None:
    found = app.extensions.get("limiter")
    return next(iter(found), None) if found else None


def exempt_from_app_limits(app: Flask, view: t.Callable[..., t.Any]) -> None:
    """Keep the host's own limits (a Flask-Limiter's ``default_limits``) off
    ``view``: a probe asks every few seconds from the same few addresses, and
    a 429 would take the node out of service. Idempotent (a set of names)."""
    for limiter in app.extensions.get("limiter") or ():
        limiter.exempt(view)


def token_throttle(state: PosWebState) -> Throttle | None:
    """The throttle of ``state``'s app, or ``None`` without Flask-Limiter.

    Looked up at each token request (a few an hour), so a ``Limiter`` set up
    after the blueprint counts too.
    """
    limiter = _limiter(state.app)
    return None if limiter is None else Throttle(limiter, state.settings.token_rate_limit)


def warn_if_unthrottled(state: PosWebState) -> None:
    """At setup: a limit is set, or OAuth is on, and nothing applies it."""
    if state.settings.merchant_rate_limit is not None and _limiter(state.app) is None:
        logger.warning(
            "POSWEB_MERCHANT_RATE_LIMIT is not applied: register Flask-Limiter on the app "
            "(Limiter(get_remote_address, app=app)) to limit each merchant to %s.",
            state.settings.merchant_rate_limit,
        )
    if state.tokens is not None and _limiter(state.app) is None:
        logger.warning(
            "The OAuth token URL is not throttled: register Flask-Limiter on the app "
            "(Limiter(get_remote_address, app=app)) to limit failed token requests to %s "
            "per address (POSWEB_TOKEN_RATE_LIMIT).",
            state.settings.token_rate_limit,
        )
