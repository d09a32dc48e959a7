"""What every endpoint checks before reading a body: method, credentials, size.

Shared by the webhook and loyalty views; fails closed.

.. versionadded:: 0.1
"""

from __future__ import annotations

from flask import current_app
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from .exceptions import MethodNotAllowedError
from .exceptions import PayloadTooLargeError
from .state import PosWebState
from .state import get_state

__all__ = ["ROUTED_METHODS", "post_only", "read_body", "require_post"]

#: Every method is routed to our views so that the 405 is ours, in JSON, with
#: ``Allow``; Flask's own 405 would be an HTML page from the app.
ROUTED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def post_only() -> None:
    """:raises MethodNotAllowedError: the request is not a ``POST``."""
    if request.method != "POST":
        raise MethodNotAllowedError()


def require_post() -> PosWebState:
    """The app's state, once the request is a ``POST`` with valid credentials.

    :raises MethodNotAllowedError: another method.
    :raises AuthenticationError: missing or wrong credentials.
    """
    post_only()
    state = get_state()
    if state.settings.authenticator is not None:
        state.settings.authenticator.authenticate(request.headers)
    return state


def read_body(limit: int) -> bytes:
    """The request body, refused before it is read when larger than ``limit``.

    :raises PayloadTooLargeError: by ``Content-Length``, or while streaming one
        without it.
    """
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    request.max_content_length = min(limit, app_limit) if app_limit else limit
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise PayloadTooLargeError(request.max_content_length) from None
