"""The webhooks: one thin view per event, the OAuth token URL, JSON errors.

Views only translate HTTP: they authenticate, read the body within its limit
and hand it to :func:`~flask_posweb.web.receiving.receive`. Errors are
rendered as JSON by one handler registered on the blueprint, never app-wide,
for every werkzeug ``HTTPException`` (ours are too): a bug is left to Flask,
which propagates it with ``PROPAGATE_EXCEPTIONS`` (debug, ``TESTING``) and
otherwise logs it and answers 500, in JSON under the prefix. A request under
the blueprint's prefix that matches no route (an unknown path, a method other
than ``POST``) is answered in JSON by the blueprint's routing hook, and the
host's own error pages elsewhere stay untouched.

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
from flask import g
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response as BaseResponse

from .. import signals
from .. import tracing
from ..auth.credentials import is_merchant_name
from ..auth.secrets import digest
from ..auth.verification import parse_basic
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
from ..payload import decode
from ..payload import parse
from ..state import PosWebState
from ..state import get_state
from .guard import SENDER
from .guard import authenticated_post
from .guard import read_body
from .guard import token_audience
from .health import health
from .receiving import receive
from .routes import TOKEN_URL
from .routes import nearest_route
from .throttle import exempt_from_app_limits
from .throttle import token_throttle

__all__ = ["register_webhooks", "webhook_view"]

logger = logging.getLogger("flask_posweb")

#: A token request is a short form; anything longer is not one.
TOKEN_REQUEST_LIMIT = 16 * 1024

#: DealPOS expects exactly this answer; built once, not serialised per request.
SUCCESS = b'{"status": "success"}\n'


def webhook_view(event_type: EventType) -> t.Callable[[], Response]:
    """The view of ``POST <prefix>/<event-name>``: receive one DealPOS event.

    A plain function rather than a ``View`` class: ``View.as_view`` wraps each
    call in ``ensure_sync`` a second time, measurable on the hot path.

    :param event_type: the event this URL stands for (DealPOS sends no type in the body).

    The view takes the ``merchant`` of a blueprint mounted at ``/dealpos/<merchant>``.
    """

    name = event_type.name

    def view(merchant: str | None = None) -> Response:
        with _receive_span(name) as span:
            with tracing.span("posweb.verify", {"posweb.event": name}):
                state, sender = authenticated_post(merchant)
            span.set("posweb.merchant", sender)
            raw = read_body(state.settings.max_content_length)
            delivery_id = receive(
                state, event_type, raw, request.headers, request.mimetype, merchant=sender
            )
            response = Response(SUCCESS, mimetype="application/json")
            if delivery_id is not None:
                response.headers["X-PosWeb-Delivery"] = str(delivery_id)
                span.set("posweb.delivery.id", delivery_id)
                span.set("messaging.message.id", str(delivery_id))
            span.set("http.response.status_code", 200 if span.server else None)
            return response

    view.__name__ = view.__qualname__ = event_type.name
    view.__doc__ = f"Receive {event_type.title} ({event_type.name})."
    return view


class _ReceiveSpan(t.NamedTuple):
    span: tracing.Span
    #: Whether it is the request's server span (no host instrumentation made one).
    server: bool

    def __enter__(self) -> _ReceiveSpan:
        self.span.__enter__()
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.span.__exit__(*exc_info)

    def set(self, key: str, value: tracing.Value) -> None:
        self.span.set(key, value)


def _receive_span(event: str) -> _ReceiveSpan:
    """The span of one delivery's request: ``receive <event>``. A child of the
    host's HTTP server span when it has one (opentelemetry-instrumentation-flask
    or a WSGI middleware), which says everything HTTP; otherwise the server
    span itself, with the HTTP attributes of the conventions."""
    if not tracing.active():
        return _UNTRACED
    attributes = tracing.messaging("receive", event)
    if tracing.in_span():
        return _ReceiveSpan(tracing.span(f"receive {event}", attributes), False)
    attributes.update(
        {
            "http.request.method": request.method,
            "http.route": request.url_rule.rule if request.url_rule else None,
            "url.path": request.path,
            "url.scheme": request.scheme,
        }
    )
    return _ReceiveSpan(tracing.span(f"receive {event}", attributes, "server"), True)


_UNTRACED = _ReceiveSpan(tracing.NOOP, False)


def token(merchant: str | None = None) -> Response:
    """``POST <prefix>/oauth/token``: the merchant's ``ServerAuthenticationURL``.

    OAuth 2.0 client credentials (RFC 6749 section 4.4): ``grant_type=client_credentials``,
    form-encoded (JSON is accepted too), client id and secret in HTTP Basic or
    in the body. Failed requests are throttled when the app has Flask-Limiter.
    The token is bound to the client's merchant: refused at any other's URL.

    :param merchant: the merchant the URL names, if the blueprint is mounted so.
    """
    state = get_state()
    if merchant is not None and not is_merchant_name(merchant):
        raise NotFoundError(request.path)
    tokens, authenticator = state.tokens, state.authenticator
    if tokens is None or authenticator is None:
        raise OAuthError("invalid_request", "OAuth is not enabled on this server.", 404)
    throttle = token_throttle(state)
    if throttle is not None:
        throttle.check()
    try:
        client_id, secret = _client_credentials()
        client = authenticator.client(client_id, secret, merchant)
        if client is None:
            basic = parse_basic(request.headers) is not None
            challenge = authenticator.challenge("basic", request.headers) if basic else None
            raise OAuthError("invalid_client", "Unknown client or wrong secret.", 401, challenge)
    except OAuthError:
        if throttle is not None:
            throttle.failed()
        raise
    issued = tokens.issue(client.merchant, client_id, digest(secret), token_audience())
    response = jsonify(issued)
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


def render_error(error: HTTPException) -> BaseResponse:
    """Every HTTP error raised under the blueprint, as JSON: ours (a refused
    request: logged and signalled, ``webhook_rejected``) and werkzeug's (a
    500 for a bug included, which Flask has logged with its traceback)."""
    if not isinstance(error, WebhookError):
        response = jsonify(status="error", message=error.description)
        response.status_code = error.code or 500
        return response
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
        merchant=sender(),
    )
    return error.get_response()


def sender() -> str | None:
    """The merchant of the current request: the one its credentials proved, else
    the one its URL names (not proven: a refused request's claim)."""
    proven: str | None = g.get(SENDER)
    return proven or (request.view_args or {}).get("merchant")


def render_store_error(error: StoreError) -> BaseResponse:
    """The inbox is down: 503, so that DealPOS retries (a 4xx would be final)."""
    retry_after = get_state().settings.retry_after
    return render_error(UnavailableError(f"{error} Retry later.", retry_after))


def exempt_from_app_csrf(app: Flask, blueprint: Blueprint) -> None:
    """Let DealPOS's POSTs past Flask-WTF's ``CSRFProtect`` if the host
    turned it on for the whole app: they carry no session cookie nor form
    token (nothing a forged cross-site request could ride on) and are
    authenticated by their own credentials; without this every delivery
    would get a 400. The delivery log page keeps its own CSRF check."""
    csrf: t.Any = app.extensions.get("csrf")
    # Flask-WTF's only: another extension under that name may mean something else by exempt.
    if csrf is not None and type(csrf).__module__.startswith("flask_wtf."):
        csrf.exempt(blueprint)


def before_any_request() -> BaseResponse | None:
    """Runs before every request of the app (not only ours), and does only
    what must be looked at per request:

    - starts the background dispatcher in this process if it does not run (the
      first request after a start or a fork; see :mod:`~flask_posweb.dispatch.runner`);
    - for a request to the webhooks, lets it past an app-wide ``CSRFProtect``
      set up after the extension (idempotent: Flask-WTF keeps a set), and a
      probe past the host's Flask-Limiter limits;
    - answers in JSON a request under the blueprint's prefix that matched no
      route: routing errors never reach a blueprint's error handlers, and
      Flask's own are HTML pages.
    """
    state = get_state()
    if state.dispatch is not None:
        state.dispatch.ensure_running()
    if request.blueprint in state.mounts:
        exempt_from_app_csrf(state.app, state.blueprint)
        if state.app.view_functions.get(request.endpoint or "") is health:
            # A Limiter set up after the blueprint: its check runs after this hook.
            exempt_from_app_limits(state.app, health)
    failed = request.routing_exception
    if failed is None or not answers_for(state, request.path):
        return None
    if isinstance(failed, MethodNotAllowed):
        allowed = sorted(set(failed.valid_methods or ["POST"]) - {"OPTIONS"})
        return render_error(MethodNotAllowedError(allowed))
    if isinstance(failed, NotFound):
        return render_error(NotFoundError(request.path, nearest_route(state, request.path)))
    if isinstance(failed, RequestRedirect):  # werkzeug merged slashes: say so in JSON
        response = jsonify(
            status="error",
            message=f"This URL is {failed.new_url!r}: fix the one given to DealPOS.",
        )
        response.status_code = failed.code
        response.headers["Location"] = failed.new_url
        return response
    if isinstance(failed, HTTPException) and (failed.code or 500) >= 400:
        return render_error(failed)  # a Host outside TRUSTED_HOSTS, say
    return None


def answers_for(state: PosWebState, path: str) -> bool:
    """Whether a request for ``path`` that matched no route is ours to answer:
    under a prefix the blueprint is mounted at, and not below another
    blueprint mounted inside it (the log page answers its own, in HTML)."""

    def under(prefix: str, candidate: str) -> bool:
        return candidate == prefix.rstrip("/") or candidate.startswith(prefix.rstrip("/") + "/")

    prefixes = list(state.prefixes())
    if not any(under(prefix, path) for prefix in prefixes):
        return False
    mounts = set(state.mounts)
    for rule in state.app.url_map.iter_rules():
        mount = rule.endpoint.rpartition(".")[0]
        if not mount or mount in mounts:
            continue
        for prefix in prefixes:
            if under(prefix, rule.rule):  # another blueprint's first segment below ours
                segment = rule.rule[len(prefix.rstrip("/")) :].split("/")[1]
                if under(prefix.rstrip("/") + "/" + segment, path):
                    return False
    return True


def register_webhooks(bp: Blueprint) -> None:
    """Add to ``bp`` one ``POST`` endpoint per event in :data:`~flask_posweb.events.EVENTS`,
    the OAuth token URL, the JSON error handlers and the routing hook."""
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
    bp.register_error_handler(HTTPException, render_error)
    bp.register_error_handler(StoreError, render_store_error)
    bp.before_app_request(before_any_request)
