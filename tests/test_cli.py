"""``flask posweb ...``: events, send, worker, list, show, replay, prune."""

from __future__ import annotations

import datetime as dt
import json
import threading
import typing as t
from collections.abc import Iterator

import click
import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.cli import parse_duration
from flask_posweb.cli import parse_moment
from flask_posweb.inbox import utcnow
from flask_posweb.loyalty import CALLS
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_events

from .conftest import MakeApp


def run(app: Flask, *args: str) -> click.testing.Result:
    return app.test_cli_runner().invoke(args=["posweb", *args], catch_exceptions=False)


@pytest.fixture
def server(make_app: MakeApp) -> Iterator[tuple[Flask, str]]:
    """A real HTTP server on loopback serving a fresh app."""
    app = make_app()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_events_lists_every_event_with_its_url_and_signal(app: Flask) -> None:
    result = run(app, "events", "--base-url", "https://shop.example.com")
    assert result.exit_code == 0
    for event in EVENTS.values():
        line = next(
            line for line in result.output.splitlines() if line.startswith(event.name + " ")
        )
        assert f"https://shop.example.com/dealpos{event.url_rule}" in line
        assert f"flask_posweb.signals.{event.name}" in line
        assert ("(provisional)" in line) == event.provisional


def test_events_json(app: Flask) -> None:
    rows = json.loads(run(app, "events", "--json").output)
    assert [row["name"] for row in rows] == list(EVENTS)
    by_name = {row["name"]: row for row in rows}
    assert (
        by_name["payment_written_off"].items()
        >= {
            "wire_name": "paymentWriteoff",
            "group": "Invoice Payment",
            "path": "/dealpos/payment-written-off",
            "signal": "flask_posweb.signals.payment_written_off",
        }.items()
    )
    assert {row["group"] for row in rows} >= {"Bill", "Outlet", "Invoice Write Off", "Shift"}


def test_send_posts_a_sample_as_dealpos_would(server: tuple[Flask, str]) -> None:
    app, url = server
    with captured_events(app) as events:
        result = run(app, "send", "payment_written_off", "--url", url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("200 OK")
    assert [e.name for e in events] == ["payment_written_off"]
    assert events[0].headers["User-Agent"].startswith("Flask-PosWeb send")
    assert "X-Api-Key" not in events[0].headers  # credentials are never stored


def test_send_a_file_to_a_full_url(server: tuple[Flask, str], tmp_path: t.Any) -> None:
    app, url = server
    payload = tmp_path / "mine.json"
    payload.write_bytes(b'{"Name": "From a file", "Extra": [1, 2.5]}')
    with captured_events(app) as events:
        result = run(
            app, "send", "outlet_created", str(payload), "--url", f"{url}/dealpos/outlet-created"
        )
    assert result.exit_code == 0, result.output
    assert events[0].raw == payload.read_bytes()


def test_send_reports_a_refusal_and_fails(server: tuple[Flask, str], tmp_path: t.Any) -> None:
    app, url = server
    payload = tmp_path / "bad.json"
    payload.write_text("{}")
    result = app.test_cli_runner().invoke(
        args=["posweb", "send", "payment_created", str(payload), "--url", url]
    )
    assert result.exit_code == 1 and result.output.startswith("422")
    wrong = app.test_cli_runner().invoke(
        args=["posweb", "send", "payment_created", "--url", url, "--key", "wrong"]
    )
    assert wrong.exit_code == 1 and wrong.output.startswith("401")


def test_send_fetches_an_oauth_token_first(make_app: MakeApp) -> None:
    app = make_app(POSWEB_API_KEYS=[], POSWEB_OAUTH_CLIENTS={"dealpos": "s"}, SECRET_KEY="k")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run(
            app, "send", "invoice_created", "--url", f"http://127.0.0.1:{httpd.server_port}"
        )
    finally:
        httpd.shutdown()
    assert result.output.startswith("200 OK"), result.output


@pytest.mark.parametrize("call", list(CALLS))
def test_send_covers_the_loyalty_calls(
    server: tuple[Flask, str], posweb: PosWeb, call: str
) -> None:
    from flask_posweb.loyalty import Coupon

    app, url = server
    posweb.loyalty.member_points(lambda c: 7)
    posweb.loyalty.order_complete(lambda c: 8)
    posweb.loyalty.validate_coupon(lambda c: Coupon("value", 9))
    result = run(app, "send", f"loyalty_{call}", "--url", url)
    assert result.output.startswith("200 OK"), result.output


def test_send_an_unknown_event(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["posweb", "send", "payment_create"])
    assert result.exit_code != 0 and "No sample for 'payment_create'" in str(result.exception)


# -- the inbox ----------------------------------------------------------------------


@pytest.fixture
def busy_app(make_app: MakeApp, posweb: PosWeb) -> Flask:
    """An inbox with one processed, one failed and one rejected delivery."""
    app = make_app()

    @posweb.on("invoice_created")
    def fails(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        if not event.is_replay:
            raise RuntimeError("the ERP is down")

    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    client.deliver("payment_created")
    client.deliver("invoice_created")
    client.deliver("payment_created", {"ID": "half"}, headers={"X-Trace": "abc"})
    return app


def test_list(busy_app: Flask) -> None:
    output = run(busy_app, "list").output
    assert output.splitlines()[-1] == "-- inbox: 1 failed, 1 processed, 1 rejected"
    failed = json.loads(run(busy_app, "list", "--status", "failed", "--json").output)
    assert [(d["id"], d["event"], d["attempts"]) for d in failed] == [(2, "invoice_created", 1)]
    events = json.loads(run(busy_app, "list", "--event", "payment_created", "--json").output)
    assert [d["id"] for d in events] == [3, 1]
    assert (
        json.loads(run(busy_app, "list", "--since", "1h", "--limit", "1", "--json").output)[0]["id"]
        == 3
    )
    assert json.loads(run(busy_app, "list", "--until", "1h", "--json").output) == []


def test_show(busy_app: Flask) -> None:
    text = run(busy_app, "show", "2").output
    assert "status:          failed" in text
    assert "RuntimeError: the ERP is down" in text and "Traceback" in text
    details = json.loads(run(busy_app, "show", "3", "--json").output)
    assert details["status"] == "rejected" and details["body"] == '{"ID": "half"}'
    assert details["errors"]["InvoiceID"] == ["Missing data for required field."]
    assert details["headers"]["X-Trace"] == "abc"
    assert not {"X-Api-Key", "Authorization"} & set(details["headers"])
    missing = busy_app.test_cli_runner().invoke(args=["posweb", "show", "99"])
    assert missing.exit_code == 1 and "No delivery 99" in missing.output


def test_replay_one_and_all_failed(busy_app: Flask) -> None:
    assert run(busy_app, "replay", "2").output.strip() == "1 replayed: 1 processed"
    inbox = get_state(busy_app).require_inbox()
    delivery = inbox.get(2)
    assert delivery is not None and delivery.status == "processed" and delivery.replay
    assert run(busy_app, "replay", "--failed").output.strip() == "0 replayed: none"


def test_replay_rejected_validates_again(busy_app: Flask) -> None:
    assert run(busy_app, "replay", "--rejected").output.strip() == "1 replayed: 1 rejected"


def test_replay_a_time_range_of_processed_deliveries(busy_app: Flask) -> None:
    since = (utcnow() - dt.timedelta(minutes=5)).isoformat()
    with captured_events(busy_app) as events:
        output = run(busy_app, "replay", "--status", "processed", "--since", since).output
    assert output.strip() == "1 replayed: 1 processed"
    assert [(e.id, e.is_replay) for e in events] == [(1, True)]


def test_replay_needs_a_choice(busy_app: Flask) -> None:
    result = busy_app.test_cli_runner().invoke(args=["posweb", "replay"])
    assert result.exit_code == 2 and "Say what to replay" in result.output


def test_replay_shows_progress_for_many(make_app: MakeApp) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    for n in range(25):
        client.deliver("outlet_created", {"ID": str(n)})
    output = run(app, "replay", "--status", "pending").output
    assert output.startswith("Replaying")  # a progress bar (drawn in full on a terminal)
    assert output.strip().endswith("25 replayed: 25 processed")


def test_worker_once(make_app: MakeApp) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert run(app, "worker", "--once").output.strip() == "1 deliveries dispatched."
    assert get_state(app).require_inbox().counts()["processed"] == 1


def test_prune(busy_app: Flask) -> None:
    assert run(busy_app, "prune").output.startswith("0 processed deliveries older than 30 days")
    assert run(busy_app, "prune", "--older-than", "0s").output.startswith("1 processed")
    assert get_state(busy_app).require_inbox().counts()["processed"] == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1d12h", 129600), ("2w", 1209600), ("0.5h", 1800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "12"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_duration(text)


def test_moments() -> None:
    assert parse_moment("2026-11-27T10:00:00+07:00") == dt.datetime(2026, 11, 27, 3)
    assert parse_moment("2026-11-27") == dt.datetime(2026, 11, 27)
    assert abs((utcnow() - parse_moment("2h")).total_seconds() - 7200) < 5
