"""What every endpoint checks before it parses a body: whose credentials, then size.

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
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from ..auth.credentials import is_merchant_name
from ..exceptions import NotFoundError
from ..exceptions import PayloadTooLargeError
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
    """The app's state and the merchant that sent the request, once it carries
    that merchant's valid credentials.

    :param merchant: the merchant the URL names (the blueprint mounted at
        ``/dealpos/<merchant>``): only its credentials count there.
    :raises NotFoundError: the URL names no possible merchant (never looked up).
    :raises AuthenticationError: missing or wrong credentials (nothing is read
        or stored first).
    :raises TooManyRequestsError: the merchant is past ``POSWEB_MERCHANT_RATE_LIMIT``.
    """
    state = get_state()
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
    without (chunked, or a server that ends the stream itself).

    Werkzeug's limited stream stops quietly *at* its limit, so it is asked for
    one byte more: a body that fills it is too large.

    :raises PayloadTooLargeError: 413, before anything is stored.
    """
    app_limit = current_app.config.get("MAX_CONTENT_LENGTH")
    limit = min(limit, app_limit) if app_limit else limit
    try:
        body = get_input_stream(request.environ, max_content_length=limit + 1).read()
    except RequestEntityTooLarge:
        raise PayloadTooLargeError(limit) from None
    if len(body) > limit:
        raise PayloadTooLargeError(limit)
    return body
