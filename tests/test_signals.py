"""Signals: senders, arguments, lifecycle, and receivers isolated from each other."""

from __future__ import annotations

import logging
import typing as t

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb import signals
from flask_posweb.exceptions import ValidationFailedError
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals

from .conftest import MakeApp

LIFECYCLE = (
    signals.webhook_received,
    signals.webhook_processed,
    signals.webhook_rejected,
    signals.receiver_failed,
    signals.webhook_dead,
)


def test_lifecycle_of_an_accepted_delivery(app: Flask, client: PosWebClient) -> None:
    with captured_signals(app, *LIFECYCLE, signals.payment_created) as sent:
        client.deliver("payment_created")
    assert [name for name, _ in sent] == [
        "webhook_received",
        "payment_created",
        "webhook_processed",
    ]
    events = [kwargs["event"] for _, kwargs in sent]
    assert all(isinstance(e, WebhookEvent) and e == events[0] for e in events)


def test_rejections_are_signalled_with_what_went_wrong(app: Flask, client: PosWebClient) -> None:
    with captured_signals(app, signals.webhook_rejected) as sent:
        client.deliver("payment_created", {"ID": "only"})
        client.deliver("payment_created", key="wrong")
    (_, invalid), (_, unauthenticated) = sent
    assert invalid["event_name"] == "payment_created"
    assert isinstance(invalid["error"], ValidationFailedError)
    assert invalid["delivery_id"] is not None  # kept for a replay
    assert unauthenticated["error"].status_code == 401
    assert unauthenticated["delivery_id"] is None  # never stored


def test_receivers_are_isolated(
    app: Flask, posweb: PosWeb, client: PosWebClient, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @posweb.on("invoice_created")
    def first(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        ran.append("first")
        raise ValueError("first is broken")

    @posweb.on("invoice_created")
    def second(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        ran.append("second")

    with captured_signals(app, signals.receiver_failed) as failed:
        response = client.deliver("invoice_created")
    assert response.status_code == 200  # stored: we retry it, not DealPOS
    assert ran == ["first", "second"]
    ((_, kwargs),) = failed
    assert kwargs["receiver"].endswith("test_receivers_are_isolated.<locals>.first")
    assert isinstance(kwargs["error"], ValueError)
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "first is broken" in caplog.text and record.exc_info is not None


def test_without_an_inbox_a_failure_is_a_500_so_dealpos_retries(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_INBOX=False)
    ran: list[str] = []
    posweb.on("payment_created")(lambda sender, event, **extra: ran.append("ok"))

    @posweb.on("payment_created")
    def broken(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        raise RuntimeError("down")

    response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 500
    assert response.json == {
        "status": "error",
        "message": "1 receiver(s) failed; the delivery was not kept.",
    }
    assert ran == ["ok"]  # the other receiver still ran
    assert get_state(app).inbox is None


def test_without_an_inbox_success_is_200(make_app: MakeApp) -> None:
    app = make_app(POSWEB_INBOX=False)
    with captured_signals(app, signals.webhook_processed) as sent:
        response = app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert response.status_code == 200 and "X-PosWeb-Delivery" not in response.headers
    assert len(sent) == 1


def test_async_receivers(app: Flask, posweb: PosWeb, client: PosWebClient) -> None:
    seen: list[str] = []

    @posweb.on("shift_closed")
    async def closed(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        seen.append(event.data["Number"])

    assert client.deliver("shift_closed").status_code == 200
    assert seen == ["SHF-2026-0331"]


def test_a_broken_lifecycle_receiver_breaks_nothing(app: Flask, client: PosWebClient) -> None:
    def broken(sender: Flask, **extra: t.Any) -> None:
        raise RuntimeError("observability bug")

    with signals.webhook_received.connected_to(broken, sender=app):
        assert client.deliver("payment_created").status_code == 200
