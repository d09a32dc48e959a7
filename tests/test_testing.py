"""The shipped test kit works for a host app's own tests."""

from __future__ import annotations

import typing as t

from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb import signals
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_events
from flask_posweb.testing import captured_signals
from flask_posweb.testing import drain

from .conftest import MakeApp


def test_deliver_sends_the_sample_with_valid_credentials(app: Flask, client: PosWebClient) -> None:
    with captured_events(app) as events:
        response = client.deliver("payment_written_off")
    assert response.status_code == 200
    assert events[0].data["TagID"] == "t-rounding"


def test_deliver_a_mapping_bytes_or_text(app: Flask, client: PosWebClient) -> None:
    with captured_events(app, "outlet_created") as events:
        client.deliver("outlet_created", {"Name": "Senopati"})
        client.deliver("outlet_created", b'{"Name": "Kemang"}')
        client.deliver("outlet_created", '{"Name": "Blok M"}')
        client.deliver("outlet_updated")  # not captured: another event
    assert [e.data["Name"] for e in events] == ["Senopati", "Kemang", "Blok M"]


def test_deliver_with_other_credentials_or_headers(client: PosWebClient) -> None:
    assert client.deliver("payment_created", key="nope").status_code == 401
    assert client.deliver("payment_created", headers={"X-API-Key": "bad"}).status_code == 401


def test_captured_signals_records_names_and_arguments(app: Flask, client: PosWebClient) -> None:
    with captured_signals(app, signals.webhook_received, signals.webhook_rejected) as sent:
        client.deliver("payment_created")
        client.deliver("payment_created", {})
    assert [name for name, _ in sent] == ["webhook_received", "webhook_rejected"]
    assert sent[1][1]["event_name"] == "payment_created"


def test_captures_end_with_the_block(app: Flask, client: PosWebClient) -> None:
    with captured_events(app) as events:
        pass
    client.deliver("payment_created")
    assert events == []


def test_drain_runs_what_a_worker_would(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    seen: list[int | None] = []

    @posweb.on("invoice_created")
    def handle(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        seen.append(event.id)

    app.test_client().deliver("invoice_created")  # type: ignore[attr-defined]
    assert seen == []
    assert drain(app) == 1 and seen == [1]
