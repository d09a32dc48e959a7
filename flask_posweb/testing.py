"""Test helpers for apps that use Flask-PosWeb (and for its own tests).

::

    from flask_posweb.testing import PosWebClient, captured_events

    def test_write_off(app):
        app.test_client_class = PosWebClient
        with captured_events(app) as events:
            response = app.test_client().deliver("payment_written_off")
        assert response.status_code == 200
        assert events[0].data["TagID"] == "t-rounding"

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import functools
import json
import typing as t
from collections.abc import Iterator
from collections.abc import Mapping

from blinker import NamedSignal
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .dispatch.runner import Runner
from .events import EVENTS
from .events import WebhookEvent
from .inbox import Filter
from .sending import auth_headers
from .sending import basic_header
from .sending import sample
from .state import get_state

__all__ = [
    "CapturedEvents",
    "PosWebClient",
    "Sent",
    "captured_events",
    "captured_signals",
    "drain",
    "sample",
]

#: What :func:`captured_events` (and the ``posweb_events`` fixture) records.
CapturedEvents = list[WebhookEvent[t.Any]]

Payload = Mapping[str, t.Any] | bytes | str | None


class PosWebClient(FlaskClient):
    """A test client that posts as DealPOS does, with the app's own valid credentials.

    Enable it with ``app.test_client_class = PosWebClient``.
    """

    def deliver(
        self,
        event: str,
        payload: Payload = None,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        merchant: str | None = None,
        **kwargs: t.Any,
    ) -> TestResponse:
        """POST ``payload`` (default: the built-in sample) to the URL of ``event``.

        :param payload: a mapping (sent as JSON), or the exact bytes/text to send.
        :param key: an API key to send instead of the configured credentials.
        :param headers: extra headers; they override the credentials.
        :param merchant: the merchant of the URL, when the blueprint is mounted
            at ``/dealpos/<merchant>`` (send that merchant's ``key`` too).

        .. versionchanged:: 0.3
            ``merchant``.
        """
        return self._post(event, payload, key, headers, merchant, **kwargs)

    def call_loyalty(
        self,
        call: str,
        payload: Payload = None,
        *,
        key: str | None = None,
        merchant: str | None = None,
        **kwargs: t.Any,
    ) -> TestResponse:
        """POST a loyalty call (``member_points``, ``order_complete``, ``validate_coupon``)."""
        return self._post(f"loyalty_{call}", payload, key, None, merchant, **kwargs)

    def _post(
        self,
        endpoint: str,
        payload: Payload,
        key: str | None,
        headers: Mapping[str, str] | None,
        merchant: str | None,
        **kwargs: t.Any,
    ) -> TestResponse:
        # With TRUSTED_HOSTS set, the test client's default host (localhost)
        # may be refused: send to a trusted one unless told where.
        kwargs.setdefault("base_url", self._trusted_base_url())
        path = get_state(self.application).path(endpoint, merchant)
        with self.application.app_context():
            # The token is fetched from the host the delivery goes to: its audience.
            fetch = functools.partial(
                self._fetch_token, base_url=kwargs["base_url"], merchant=merchant
            )
            credentials = auth_headers(fetch, key)
        if payload is None:
            body = sample(endpoint)
        elif isinstance(payload, (bytes, str)):
            body = payload.encode() if isinstance(payload, str) else payload
        else:
            body = json.dumps(payload, default=str).encode()
        kwargs.setdefault("content_type", "application/json")
        return self.post(path, data=body, headers={**credentials, **(headers or {})}, **kwargs)

    def _fetch_token(
        self,
        client_id: str,
        secret: str,
        base_url: str | None = None,
        merchant: str | None = None,
    ) -> str:
        response = self.post(
            get_state(self.application).path("oauth_token", merchant),
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_header(f"{client_id}:{secret}")},
            base_url=base_url,
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return str(response.json["access_token"])  # type: ignore[index]

    def _trusted_base_url(self) -> str | None:
        """The first of ``TRUSTED_HOSTS``, if set, with the app's root (as
        Flask's test client builds its default ``base_url``)."""
        config = self.application.config
        if not config.get("TRUSTED_HOSTS"):
            return None
        root = (config.get("APPLICATION_ROOT") or "/").lstrip("/")
        return f"http://{config['TRUSTED_HOSTS'][0].lstrip('.')}/{root}"


class Sent(t.NamedTuple):
    """One signal sent, as :func:`captured_signals` records it.

    .. versionadded:: 0.2
    """

    #: The signal's name (``"webhook_dead"``).
    name: str
    #: Its keyword arguments (``{"event": ..., "failed": [...]}``).
    kwargs: dict[str, t.Any]


@contextlib.contextmanager
def captured_signals(app: Flask, *signals: NamedSignal) -> Iterator[list[Sent]]:
    """Record each of ``signals`` sent by ``app``, in order, as a :class:`Sent`."""
    sent: list[Sent] = []

    def recorder(name: str) -> t.Callable[..., None]:
        def record(sender: Flask, **kwargs: t.Any) -> None:
            sent.append(Sent(name, kwargs))

        return record

    with contextlib.ExitStack() as stack:
        for signal in signals:
            stack.enter_context(signal.connected_to(recorder(signal.name), sender=app))
        yield sent


@contextlib.contextmanager
def captured_events(app: Flask, *names: str) -> Iterator[CapturedEvents]:
    """Record each :class:`~flask_posweb.WebhookEvent` dispatched by ``app`` (of the
    events ``names``; default all), in order. The recorder is a receiver like any
    other: the inbox lists it among the event's receivers."""
    events: CapturedEvents = []

    def record(sender: Flask, event: WebhookEvent[t.Any], **kwargs: t.Any) -> None:
        events.append(event)

    with contextlib.ExitStack() as stack:
        for name in names or EVENTS:
            stack.enter_context(EVENTS[name].signal.connected_to(record, sender=app))
        yield events


def drain(app: Flask, *, failed: bool = True) -> int:
    """Dispatch every due delivery of ``app`` now, as ``flask posweb worker --once``.

    :param failed: also run failed deliveries now, without waiting for their
        backoff (a test that checks retries need not sleep).
    :returns: how many deliveries were dispatched.
    """
    state = get_state(app)
    if failed:
        state.require_inbox().hurry(Filter())
    return Runner(state.require_dispatcher()).drain()
