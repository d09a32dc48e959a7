"""What every endpoint checks before it parses a body: the headers' bounds,
whose credentials, then the body's size and completeness.

Shared by the webhook and loyalty views; fails closed. Routes take ``POST``
only; any other method is answered by the blueprint's routing hook (a JSON
405), never by a view.

.. versionadded:: 0.1
"""

from __future__ import annotations

from flask import current_app
from flask import g
from flask import request
from flask import url_for
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from ..auth.credentials import is_merchant_name
from ..exceptions import IncompleteBodyError
from ..exceptions import NotFoundError
from ..exceptions import PayloadTooLargeError
from ..headers import check_bounds
from ..state import PosWebState
from ..state import get_state
from .throttle import merchant_limit

__all__ = ["SENDER", "authenticated_post", "read_body", "token_audience"]

#: Where a request's proven merchant is kept in :data:`flask.g`.
SENDER = "posweb_merchant"


def token_audience() -> str:
    """Who this server is for tokens: ``POSWEB_TOKEN_AUDIENCE``, else the token
    URL's own external URL (a merchant's own, when the blueprint is mounted per
    merchant: its tokens are for its URLs only)."""
    # The first mount's token URL, whichever mount is called: the one the
    # OpenAPI description gives.
    state = get_state()
    if state.settings.token_audience:
        return state.settings.token_audience
    merchant = (request.view_args or {}).get("merchant")
    if not state.per_merchant:
        return url_for(state.endpoint("oauth_token"), _external=True)
    if merchant is None:  # another mount, with no merchant: its own token URL
        return url_for(f"{request.blueprint}.oauth_token", _external=True)
    return url_for(state.endpoint("oauth_token"), merchant=merchant, _external=True)


def authenticated_post(merchant: str | None = None) -> tuple[PosWebState, str | None]:
    """The app's state and the merchant that sent the request, once its headers
    are within bounds and carry that merchant's valid credentials.

    :param merchant: the merchant the URL names (the blueprint mounted at
        ``/dealpos/<merchant>``): only its credentials count there.
    :raises NotFoundError: the URL names no possible merchant (never looked up).
    :raises HeadersTooLargeError: too many headers, or too many bytes of them
        (nothing is read or stored first).
    :raises AuthenticationError: missing or wrong credentials (nothing is read
        or stored first).
    :raises TooManyRequestsError: the merchant is past ``POSWEB_MERCHANT_RATE_LIMIT``.
    """
    state = get_state()
    settings = state.settings
    # Before the credentials: it costs less than checking them, tells a caller
    # nothing about them, and keeps their parsing from an oversized header.
    # Nothing is stored either way, for a caller with credentials or without.
    check_bounds(request.headers, settings.max_headers, settings.max_header_bytes)
    if merchant is not None and not is_merchant_name(merchant):
        raise NotFoundError(request.path)
    sender = merchant
    if state.authenticator is not None:
        sender = state.authenticator.authenticate(request.headers, merchant, token_audience)
    g.setdefault(SENDER, sender)  # for the signals of what follows (a refusal's included)
    limit = merchant_limit(state)
    if limit is not None:
        limit.hit(sender)
    return state, sender


def read_body(limit: int) -> bytes:
    """The request body, refused once it passes ``limit`` bytes, however it
    arrives: by ``Content-Length`` before it is read, and while reading one
    without (chunked, or a server that ends the stream itself); and refused
    when it ends before its ``Content-Length``.

    Werkzeug's limited stream stops quietly *at* its limit, so it is asked for
    one byte more: a body that fills it is too large.

    :raises PayloadTooLargeError: 413, before anything is stored.
    :raises IncompleteBodyError: 400, the client went away mid-body; nothing
        is stored.
    """
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    limit = min(limit, app_limit) if app_limit else limit
    declared = request.content_length  # None when chunked
    try:
        body = get_input_stream(request.environ, max_content_length=limit + 1).read()
    except RequestEntityTooLarge:
        raise PayloadTooLargeError(limit) from None
    except ClientDisconnected:  # werkzeug's own stream, or a reset the server reported
        raise IncompleteBodyError(declared) from None
    if len(body) > limit:
        raise PayloadTooLargeError(limit)
    # A server that ends the stream itself (gunicorn sets wsgi.input_terminated)
    # ends it quietly when the client goes away: what came is all there is.
    if declared is not None and len(body) < declared:
        raise IncompleteBodyError(declared, len(body))
    return body
