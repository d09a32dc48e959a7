"""Errors and warnings raised by Flask-PosWeb.

Only :class:`WebhookError` and its subclasses become HTTP answers: they are
werkzeug HTTP exceptions (:class:`~werkzeug.exceptions.HTTPException`) that
render themselves as JSON, so one error handler (the blueprint's) serves them and werkzeug's own
alike, and an app's handler for ``HTTPException`` sees them too.
:class:`ConfigurationError` is raised at setup and must never turn into a 4xx.
"""

from __future__ import annotations

import json
import typing as t

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


class PosWebError(Exception):
    """Base class for all errors raised by Flask-PosWeb."""


class ConfigurationError(PosWebError, RuntimeError):
    """Missing or invalid ``POSWEB_*`` configuration, raised at setup."""


class UnknownEventError(PosWebError, LookupError):
    """An event name is not in the catalogue."""


class StoreError(PosWebError):
    """The inbox could not be read or written.

    :param reason: why, in the database driver's words (``OperationalError:
        unable to open database file``): for logs and the command line, never
        for an HTTP answer.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookError(PosWebError, HTTPException):
    """A request was refused: an HTTP error whose answer is JSON.

    :param message: one sentence saying what was wrong, safe to show the sender.

    .. versionchanged:: 0.3
        A werkzeug :class:`~werkzeug.exceptions.HTTPException` (its ``code`` is
        :attr:`status_code`, its ``description`` the message).
    """

    code = 400
    #: Id of the inbox row that keeps the refused body, when it was kept.
    delivery_id: int | None = None

    def __init__(self, message: str) -> None:
        HTTPException.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def status_code(self) -> int:
        """The HTTP status of the answer (werkzeug's ``code``)."""
        return self.code

    def get_response(
        self, environ: WSGIEnvironment | t.Any = None, scope: dict[str, t.Any] | None = None
    ) -> Response:
        """The JSON answer, with :meth:`headers` and the kept body's id: what
        werkzeug sends when no handler renders the error itself."""
        response = Response(
            json.dumps(self.body()) + "\n", self.status_code, mimetype="application/json"
        )
        response.headers.update(self.headers())
        if self.delivery_id is not None:  # the refused body is kept: where to find it
            response.headers["X-PosWeb-Delivery"] = str(self.delivery_id)
        return response

    def stored_errors(self) -> dict[str, t.Any]:
        """What the inbox records about this refusal."""
        return {"_body": [self.message]}

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}

    def body(self) -> dict[str, t.Any]:
        """The JSON answer for this error."""
        return {"status": "error", "message": self.message}


class NotFoundError(WebhookError):
    """No endpoint at this URL under the blueprint's prefix (a typo pasted into DealPOS?)."""

    code = 404

    def __init__(self, path: str, nearest: str | None = None) -> None:
        """:param nearest: the endpoint's URL that ``path`` most likely meant."""
        hint = f" Did you mean {nearest!r}?" if nearest else ""
        super().__init__(
            f"No DealPOS endpoint at {path!r}.{hint} 'flask posweb events' lists the URLs."
        )


class MethodNotAllowedError(WebhookError):
    """The endpoint only takes ``POST``."""

    code = 405

    def __init__(self, allowed: t.Iterable[str] = ("POST",)) -> None:
        self.allowed = tuple(allowed)
        super().__init__(f"Method not allowed; use {', '.join(self.allowed)}.")

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class AuthenticationError(WebhookError):
    """Missing or wrong credentials.

    The message never says which check failed, so a caller learns nothing from it.

    :param challenges: ``WWW-Authenticate`` challenges, one per configured mode.
    """

    code = 401

    def __init__(self, challenges: t.Sequence[str]) -> None:
        super().__init__("Missing or invalid credentials.")
        self.challenges = tuple(challenges)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": ", ".join(self.challenges)}


class PayloadTooLargeError(WebhookError):
    """The body is larger than ``POSWEB_MAX_CONTENT_LENGTH``."""

    code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than {limit} bytes.")


class IncompleteBodyError(WebhookError):
    """The body ended before it was whole: short of the length its
    ``Content-Length`` declares, or with the connection broken. The client
    went away mid-request; what arrived is not the delivery, and is never
    stored, not even as rejected.

    :param declared: the ``Content-Length``; ``None`` for a chunked body.
    :param received: the bytes that arrived, when the server says.

    .. versionadded:: 0.3
    """

    code = 400

    def __init__(self, declared: int | None, received: int | None = None) -> None:
        if declared is None:
            what = "The body ended before it was whole (the connection broke)"
        elif received is None:
            what = f"The body ended before the {declared} bytes its Content-Length declares"
        else:
            what = (
                f"The body ended after {received} of the {declared} bytes its "
                "Content-Length declares"
            )
        super().__init__(f"{what}; nothing was kept: send it again, whole.")
        self.declared = declared
        self.received = received


class HeadersTooLargeError(WebhookError):
    """More request headers, or more bytes of them, than ``POSWEB_MAX_HEADERS``
    and ``POSWEB_MAX_HEADER_BYTES`` allow: refused before the credentials are
    checked, and never stored.

    .. versionadded:: 0.3
    """

    code = 431


class UnsupportedMediaTypeError(WebhookError):
    """The body is not declared as JSON."""

    code = 415

    def __init__(self, content_type: str | None, message: str | None = None) -> None:
        got = f"'{content_type}'" if content_type else "no Content-Type"
        super().__init__(message or f"Expected 'application/json', got {got}.")


class PayloadError(WebhookError):
    """The body is not a JSON object."""

    code = 400


class ValidationFailedError(WebhookError):
    """The body does not match the event's schema.

    :param errors: marshmallow's ``normalized_messages()``: field path to messages.
    """

    code = 422

    def __init__(self, errors: dict[str, t.Any]) -> None:
        super().__init__("The body does not match the event's schema.")
        self.errors = errors

    def body(self) -> dict[str, t.Any]:
        return {**super().body(), "errors": self.errors}

    def stored_errors(self) -> dict[str, t.Any]:
        return self.errors


class ReceiverError(WebhookError):
    """A receiver raised while no durable inbox holds the delivery.

    Answered 500 so that DealPOS retries it once.
    """

    code = 500

    def __init__(self, failed: t.Sequence[str]) -> None:
        super().__init__(f"{len(failed)} receiver(s) failed; the delivery was not kept.")
        self.failed = tuple(failed)


class NoProviderError(WebhookError):
    """A loyalty call arrived but the app registered no provider for it."""

    code = 501

    def __init__(self, title: str, decorator: str) -> None:
        super().__init__(f"No provider answers {title}: decorate one with '{decorator}'.")


class ProviderError(WebhookError):
    """A loyalty provider raised or returned an answer DealPOS cannot use."""

    code = 500


class TooManyRequestsError(WebhookError):
    """A merchant sent more than its limit (``POSWEB_MERCHANT_RATE_LIMIT``).

    DealPOS retries a 429 once, 7 s later.

    :param retry_after: seconds, sent as ``Retry-After``.

    .. versionadded:: 0.3
    """

    code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UnavailableError(WebhookError):
    """The delivery could not be committed (or answered in time); retry later.

    :param retry_after: seconds, sent as ``Retry-After``.
    """

    code = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class OAuthError(WebhookError):
    """A token request was refused (RFC 6749 section 5.2).

    :param error: the OAuth error code, e.g. ``invalid_client``.
    """

    def __init__(
        self,
        error: str,
        description: str,
        status_code: int = 400,
        challenge: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.code = status_code
        self.challenge = challenge
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.challenge:
            headers["WWW-Authenticate"] = self.challenge
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def body(self) -> dict[str, t.Any]:
        return {"error": self.error, "error_description": self.message}


class PosWebWarning(UserWarning):
    """Base class for warnings emitted by Flask-PosWeb."""


class InsecureWebhookWarning(PosWebWarning):
    """Webhooks are accepted without authentication (``POSWEB_NO_AUTH``)."""
