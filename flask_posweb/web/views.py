"""The blueprint: one thin view per event, the OAuth token URL, JSON errors.

Views only translate HTTP: they authenticate, read the body within its limit
and hand it to :func:`~flask_posweb.web.receiving.receive`. Errors are
rendered as JSON by handlers registered on the blueprint, never app-wide; a
request under the blueprint's prefix that matches no route (an unknown path, a
method other than ``POST``) is answered in JSON by the blueprint's routing
hook, and the host's own error pages elsewhere stay untouched.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import typing as t
import urllib.parse

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound

from .. import signals
from ..auth.verification import BasicVerifier
from ..auth.verification import parse_basic
from ..cli import register_commands
from ..dispatch.receivers import notify
from ..events import EVENTS
from ..events import EventType
from ..exceptions import MethodNotAllowedError
from ..exceptions import NotFoundError
from ..exceptions import OAuthError
from ..exceptions import PayloadError
from ..exceptions import StoreError
from ..exceptions import UnavailableError
from ..exceptions import WebhookError
from ..loyalty.views import register_loyalty_views
from ..payload import decode
from ..payload import parse
from ..state import PosWebState
from ..state import get_state
from .guard import authenticated_post
from .guard import read_body
from .guard import token_audience
from .receiving import receive
from .routes import TOKEN_URL
from .routes import nearest_route
from .throttle import token_throttle

if t.TYPE_CHECKING:
    from ..extension import PosWeb

__all__ = ["OPENAPI_URL", "create_blueprint", "webhook_view"]

logger = logging.getLogger("flask_posweb")

#: Where the OpenAPI description is served, when ``POSWEB_OPENAPI`` is on.
OPENAPI_URL = "/openapi.json"
#: A token request is a short form; anything longer is not one.
TOKEN_REQUEST_LIMIT = 16 * 1024

#: DealPOS expects exactly this answer; built once, not serialised per request.
SUCCESS = b'{"status": "success"}\n'


def webhook_view(event_type: EventType) -> t.Callable[[], Response]:
    """The view of ``POST <prefix>/<event-name>``: receive one DealPOS event.

    A plain function rather than a ``View`` class: ``View.as_view`` wraps each
    call in ``ensure_sync`` a second time, measurable on the hot path.

    :param event_type: the event this URL stands for (DealPOS sends no type in the body).
    """

    def view() -> Response:
        state = authenticated_post()
        raw = read_body(state.settings.max_content_length)
        delivery_id = receive(state, event_type, raw, request.headers, request.mimetype)
        response = Response(SUCCESS, mimetype="application/json")
        if delivery_id is not None:
            response.headers["X-PosWeb-Delivery"] = str(delivery_id)
        return response

    view.__name__ = view.__qualname__ = event_type.name
    view.__doc__ = f"Receive {event_type.title} ({event_type.name})."
    return view


def token() -> Response:
    """``POST <prefix>/oauth/token``: the merchant's ``ServerAuthenticationURL``.

    OAuth 2.0 client credentials (RFC 6749 section 4.4): ``grant_type=client_credentials``,
    form-encoded (JSON is accepted too), client id and secret in HTTP Basic or
    in the body. Failed requests are throttled when the app has Flask-Limiter.
    """
    state = get_state()
    tokens = state.settings.tokens
    if tokens is None:
        raise OAuthError("invalid_request", "OAuth is not enabled on this server.", 404)
    throttle = token_throttle(state)
    if throttle is not None:
        throttle.check()
    try:
        client_id, secret = _client_credentials()
        if not tokens.authenticate_client(client_id, secret):
            challenge = BasicVerifier.challenge if parse_basic(request.headers) else None
            raise OAuthError("invalid_client", "Unknown client or wrong secret.", 401, challenge)
    except OAuthError:
        if throttle is not None:
            throttle.failed()
        raise
    response = jsonify(tokens.issue(client_id, secret, token_audience()))
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    return response


def _client_credentials() -> tuple[str, str]:
    """The client id and secret of a well-formed token request (RFC 6749 sections 4.4, 2.3.1).

    :raises OAuthError: ``invalid_request`` or ``unsupported_grant_type``.
    """
    fields = _token_request_fields()
    grant = fields.get("grant_type")
    if not grant:
        raise OAuthError(
            "invalid_request", "Missing grant_type: use grant_type=client_credentials."
        )
    if grant != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Use grant_type=client_credentials.")
    basic = parse_basic(request.headers)
    in_body = (fields.get("client_id"), fields.get("client_secret"))
    if basic and any(in_body):
        raise OAuthError("invalid_request", "Send client credentials in one place only.")
    client_id, secret = basic or in_body
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise OAuthError("invalid_request", "Missing client_id or client_secret.")
    return client_id, secret


def _token_request_fields() -> dict[str, t.Any]:
    raw = read_body(TOKEN_REQUEST_LIMIT)
    try:
        if request.mimetype in ("application/json",) or request.mimetype.endswith("+json"):
            return parse(raw)
        if request.mimetype in ("application/x-www-form-urlencoded", ""):
            pairs = urllib.parse.parse_qsl(decode(raw), max_num_fields=16)
            if len({name for name, _ in pairs}) != len(pairs):
                raise OAuthError("invalid_request", "A parameter is given more than once.")
            return dict(pairs)
    except (PayloadError, ValueError) as exc:
        message = exc.message if isinstance(exc, PayloadError) else "Too many parameters."
        raise OAuthError("invalid_request", message) from None
    raise OAuthError(
        "invalid_request", "Send the token request as application/x-www-form-urlencoded."
    )


def openapi_json() -> Response:
    """``GET <prefix>/openapi.json``: this app's OpenAPI description, when
    ``POSWEB_OPENAPI`` is on; otherwise a 404, as for any unknown path.

    No credentials: the document describes the endpoints and receives nothing,
    and the tools that fetch it (documentation viewers, client generators) send
    none. It names no secret: only the header and the modes credentials take.
    An app that wants it private leaves this off and serves
    :func:`~flask_posweb.openapi.openapi_json` from a view of its own.
    """
    state = get_state()
    if not state.settings.openapi:
        raise NotFoundError(request.path)
    from ..openapi import served_json  # apispec: imported only when the document is asked for

    return Response(served_json(state.app, request.script_root), mimetype="application/json")


def _render(error: WebhookError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status_code
    response.headers.update(error.headers())
    if error.delivery_id is not None:  # the refused body is kept: where to find it
        response.headers["X-PosWeb-Delivery"] = str(error.delivery_id)
    return response


def render_webhook_error(error: WebhookError) -> Response:
    """JSON answer for a refused request; logged and signalled (``webhook_rejected``)."""
    endpoint = (request.endpoint or "").partition(".")[2] or None
    level = logging.ERROR if error.status_code >= 500 else logging.WARNING
    logger.log(
        level,
        "%s %s refused with %s: %s",
        request.method,
        request.path,
        error.status_code,
        error.message,
    )
    app = t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    notify(
        signals.webhook_rejected,
        app,
        event_name=endpoint,
        error=error,
        delivery_id=error.delivery_id,
    )
    return _render(error)


def render_store_error(error: StoreError) -> Response:
    """The inbox is down: 503, so that DealPOS retries (a 4xx would be final)."""
    retry_after = get_state().settings.retry_after
    unavailable = UnavailableError(f"{error} Retry later.", retry_after)
    return render_webhook_error(unavailable)


def render_http_error(error: HTTPException) -> Response:
    """Werkzeug's errors raised inside the blueprint, as JSON too."""
    response = jsonify(status="error", message=error.description)
    response.status_code = error.code or 500
    return response


def render_unexpected(error: Exception) -> Response:
    """A bug: logged with its traceback, answered without it."""
    logger.error("Unexpected error on %s", request.path, exc_info=error)
    response = jsonify(status="error", message="Internal error.")
    response.status_code = 500
    return response


def exempt_from_app_csrf(state: PosWebState) -> None:
    """Let DealPOS's POSTs past Flask-WTF's ``CSRFProtect`` if the host
    turned it on for the whole app: they carry no session cookie nor form
    token (nothing a forged cross-site request could ride on) and are
    authenticated by their own credentials; without this every delivery
    would get a 400. The delivery log page keeps its own CSRF check."""
    csrf: t.Any = state.app.extensions.get("csrf")
    # Flask-WTF's only: another extension under that name may mean something else by exempt.
    if csrf is not None and type(csrf).__module__.startswith("flask_wtf."):
        csrf.exempt(state.extension.blueprint)


def before_any_request() -> Response | None:
    """Runs before every request of the app (not only ours).

    Starts the background dispatcher at the first request this process serves
    (see :mod:`~flask_posweb.dispatch.runner`), exempts the webhooks from an
    app-wide ``CSRFProtect`` set up after the blueprint, and answers in JSON a request
    under the blueprint's prefix that matched no route: routing errors never
    reach a blueprint's error handlers, and Flask's own are HTML pages.
    """
    state = get_state()
    if state.background is not None and not state.background.running:
        state.background.ensure_started()
    if not state.csrf_checked:  # once: CSRFProtect may be set up after the blueprint
        exempt_from_app_csrf(state)
        state.csrf_checked = True
    failed = request.routing_exception
    if failed is None or not state.answers_for(request.path):
        return None
    if isinstance(failed, MethodNotAllowed):
        allowed = sorted(set(failed.valid_methods or ["POST"]) - {"OPTIONS"})
        return render_webhook_error(MethodNotAllowedError(allowed))
    if isinstance(failed, NotFound):
        return render_webhook_error(NotFoundError(request.path, nearest_route(state, request.path)))
    if isinstance(failed, HTTPException) and (failed.code or 500) >= 400:
        return render_http_error(failed)  # a Host outside TRUSTED_HOSTS, say (not a redirect)
    return None


def create_blueprint(extension: PosWeb) -> Blueprint:
    """The blueprint serving every event in :data:`~flask_posweb.events.EVENTS`.

    A factory, because a blueprint cannot change once registered.
    """
    bp = Blueprint("posweb", __name__)
    for event_type in EVENTS.values():
        bp.add_url_rule(
            event_type.url_rule,
            view_func=webhook_view(event_type),
            methods=["POST"],
            provide_automatic_options=False,
        )
    bp.add_url_rule(
        TOKEN_URL, "oauth_token", token, methods=["POST"], provide_automatic_options=False
    )
    register_loyalty_views(bp, extension.loyalty)
    bp.add_url_rule(
        OPENAPI_URL,
        "openapi_json",
        openapi_json,
        methods=["GET"],
        provide_automatic_options=False,
    )
    bp.register_error_handler(WebhookError, render_webhook_error)
    bp.register_error_handler(StoreError, render_store_error)
    bp.register_error_handler(HTTPException, render_http_error)
    bp.register_error_handler(Exception, render_unexpected)
    bp.before_app_request(before_any_request)
    bp.record_once(extension._setup)
    bp.record(extension._mounted)
    register_commands(bp)
    return bp
