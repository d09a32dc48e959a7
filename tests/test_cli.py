"""``flask posweb ...``: events, send, worker, list, show, replay, prune, db."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import socket
import threading
import typing as t
from collections.abc import Iterator

import click
import pytest
from click.testing import Result
from flask import Flask
from werkzeug.serving import make_server

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.cli import parse_moment
from flask_posweb.durations import parse_duration
from flask_posweb.inbox import MAX_ID
from flask_posweb.inbox import utcnow
from flask_posweb.inbox.migrations import head
from flask_posweb.loyalty import CALLS
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_events

from .conftest import MakeApp


def run(app: Flask, *args: str) -> Result:
    """Run a command the way a user does: errors are part of the output."""
    return app.test_cli_runner().invoke(args=["posweb", *args])


@pytest.fixture
def server(make_app: MakeApp) -> Iterator[tuple[Flask, str]]:
    """A real HTTP server on loopback serving a fresh app."""
    app = make_app()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


OAUTH = {"POSWEB_OAUTH_CLIENTS": {"dealpos": "client-secret-0123456789"}, "SECRET_KEY": "k" * 16}


def test_events_lists_every_url_to_paste(make_app: MakeApp, posweb: PosWeb) -> None:
    for call in CALLS.values():  # a provider for each call, or its URL answers 501
        getattr(posweb.loyalty, call.name)(lambda call: 1)
    app = make_app(**OAUTH)
    result = run(app, "events", "--base-url", "https://shop.example.com")
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    for event in EVENTS.values():
        line = next(line for line in lines if line.startswith(event.name + " "))
        assert f"https://shop.example.com/dealpos{event.url_rule}" in line
        assert f"flask_posweb.signals.{event.name}" in line
        assert ("(provisional)" in line) == event.provisional
    for call in CALLS.values():
        assert any(f"https://shop.example.com/dealpos{call.url_rule}" in line for line in lines)
    assert any("https://shop.example.com/dealpos/oauth/token" in line for line in lines)


def test_events_leaves_out_the_urls_this_app_does_not_serve(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    """No OAuth clients: the token URL answers 404. A loyalty call without a
    provider answers 501. Neither is worth pasting into DealPOS."""
    posweb.loyalty.member_points(lambda call: 1)
    rows = json.loads(run(make_app(), "events", "--json", "--base-url", "http://x").stdout)
    assert [row["name"] for row in rows if row["kind"] != "event"] == ["loyalty_member_points"]
    assert len(rows) == len(EVENTS) + 1


def test_events_says_when_the_base_url_is_a_guess(app: Flask) -> None:
    result = run(app, "events")
    assert "Warning: no --base-url" in result.stderr
    assert "http://localhost:5000/dealpos/payment-created" in result.stdout
    app.config["SERVER_NAME"] = "shop.example.com"
    named = run(app, "events")
    assert named.stderr == "" and "http://shop.example.com/dealpos/payment-created" in named.stdout


def test_events_json(make_app: MakeApp, posweb: PosWeb) -> None:
    posweb.loyalty.order_complete(lambda call: 1)
    app = make_app(**OAUTH)
    rows = json.loads(run(app, "events", "--json", "--base-url", "http://x").stdout)
    events = [row for row in rows if row["kind"] == "event"]
    assert [row["name"] for row in events] == list(EVENTS)
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
    assert by_name["loyalty_order_complete"]["path"] == "/dealpos/loyalty/order-complete"
    assert by_name["oauth_token"]["url"] == "http://x/dealpos/oauth/token"


def test_send_posts_a_sample_as_dealpos_would(server: tuple[Flask, str]) -> None:
    app, url = server
    with captured_events(app) as events:
        result = run(app, "send", "payment_written_off", "--url", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("200 OK")
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
    result = run(app, "send", "payment_created", str(payload), "--url", url)
    assert result.exit_code == 1 and result.stdout.startswith("422")
    wrong = run(app, "send", "payment_created", "--url", url, "--key", "wrong")
    assert wrong.exit_code == 1 and wrong.stdout.startswith("401")


def test_send_fetches_an_oauth_token_first(make_app: MakeApp) -> None:
    app = make_app(
        POSWEB_API_KEYS=[], POSWEB_OAUTH_CLIENTS={"dealpos": "s" * 16}, SECRET_KEY="k" * 16
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run(
            app, "send", "invoice_created", "--url", f"http://127.0.0.1:{httpd.server_port}"
        )
    finally:
        httpd.shutdown()
    assert result.stdout.startswith("200 OK"), result.output


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
    assert result.stdout.startswith("200 OK"), result.output


def test_an_unknown_event_is_one_line_with_a_suggestion(app: Flask) -> None:
    result = run(app, "send", "payment_create")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: No event or loyalty call 'payment_create'; did you mean ")
    assert "'payment_created'" in line


def test_a_closed_port_is_one_line(app: Flask) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(app, "send", "payment_created", "--url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Could not reach http://127.0.0.1:" in result.stderr and "Traceback" not in result.output


def test_a_database_error_is_one_line_in_the_db_commands(
    make_app: MakeApp, tmp_path: pathlib.Path
) -> None:
    """A stranger's review: a wrong password printed a traceback from ``db current``."""
    app = make_app(POSWEB_DATABASE_URL=f"sqlite:///{tmp_path}")  # a folder, not a file
    for command in (["db", "current"], ["db", "upgrade"]):
        result = run(app, *command)
        assert result.exit_code == 1, command
        (line,) = result.stderr.strip().splitlines()
        assert line == "Error: The inbox's database: OperationalError: unable to open database file"


def test_a_base_url_needs_its_scheme(app: Flask) -> None:
    """It is printed for pasting into DealPOS: ``//shop.example.com/...`` would not work."""
    result = run(app, "events", "--base-url", "shop.example.com")
    assert result.exit_code == 2 and "not a URL like https://" in result.stderr
    assert (
        "https://shop.example.com/dealpos/"
        in run(app, "events", "--base-url", "https://shop.example.com").stdout
    )


def test_replaying_an_unknown_id_fails(app: Flask) -> None:
    app.test_client().deliver("outlet_created")  # type: ignore[attr-defined]
    result = run(app, "replay", "1", "99", "98")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: No deliveries 98, 99 in this inbox."
    assert get_state(app).require_inbox().get(1).replay is False  # nothing was replayed


HUGE = "99999999999999999999999"  # past a signed 64-bit integer: a traceback in 0.2


@pytest.mark.parametrize(
    "args",
    [
        ("show", HUGE),
        ("show", str(MAX_ID + 1)),
        ("show", "0"),
        ("show", "²"),
        ("show", "9" * 5000),
        ("replay", HUGE),
        ("replay", "1", HUGE),
        ("list", "--before", HUGE),
        ("list", "--limit", HUGE),
        ("list", "--limit", "0"),
        ("list", "--limit", "-5"),  # SQLite takes LIMIT -5 as no limit at all
        ("list", "--since", "0001-01-01T00:00+07:00"),
        ("prune", "--older-than", "99999999999w"),
    ],
)
def test_a_number_the_store_cannot_take_is_a_one_line_error(
    app: Flask, args: tuple[str, ...]
) -> None:
    app.test_client().deliver("outlet_created")  # type: ignore[attr-defined]
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # click's usage error, nothing raised
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Invalid value" in errors[0]
    assert get_state(app).require_inbox().get(1).replay is False  # type: ignore[union-attr]


def test_the_largest_id_reaches_the_store(app: Flask) -> None:
    result = run(app, "show", str(MAX_ID))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: No delivery {MAX_ID} in this inbox."
    assert run(app, "list", "--before", str(MAX_ID), "--limit", str(MAX_ID)).exit_code == 0


def test_help_texts_are_plain(app: Flask) -> None:
    for command in ("replay", "send", "prune", "worker"):
        text = run(app, command, "--help").stdout
        assert "``" not in text and ":param" not in text, command
    assert "[FILE]" in run(app, "send", "--help").stdout


def test_a_bad_time_says_which_forms_work(app: Flask) -> None:
    result = run(app, "list", "--since", "yesterday")
    assert result.exit_code == 2
    assert "an ISO date or date-time" in result.stderr and "duration ago" in result.stderr


def test_a_misspelt_status_suggests_the_right_one(app: Flask) -> None:
    result = run(app, "list", "--status", "proccessed")
    assert result.exit_code == 2 and "Did you mean 'processed'?" in result.stderr


# -- the inbox ----------------------------------------------------------------------


@pytest.fixture
def busy_app(make_app: MakeApp, posweb: PosWeb) -> Flask:
    """An inbox with one processed, one failed and one rejected delivery."""
    app = make_app()

    @posweb.on("payment_created")
    def ledger(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
        pass

    @posweb.on("invoice_created")
    def fails(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
        if not event.is_replay:
            raise RuntimeError("the ERP is down")

    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    client.deliver("payment_created")
    client.deliver("invoice_created")
    client.deliver("payment_created", {"ID": "half"}, headers={"X-Trace": "abc"})
    return app


def test_list(busy_app: Flask) -> None:
    lines = run(busy_app, "list").stdout.splitlines()
    assert lines[-1] == "-- inbox: 1 failed, 1 processed, 1 rejected"
    failed_line = next(line for line in lines if line.split()[0] == "2")
    assert " UTC " in failed_line and failed_line.endswith(
        "1 attempt  next " + failed_line.split("next ")[1]
    )
    assert failed_line.split("next ")[1].endswith(" UTC")
    failed = json.loads(run(busy_app, "list", "--status", "failed", "--json").stdout)
    assert [(d["id"], d["event"], d["attempts"]) for d in failed] == [(2, "invoice_created", 1)]
    assert failed[0]["received_at"].endswith("+00:00")
    assert failed[0]["failed_receivers"] == ["busy_app.<locals>.fails"]
    events = json.loads(run(busy_app, "list", "--event", "payment_created", "--json").stdout)
    assert [d["id"] for d in events] == [3, 1]
    assert [
        d["id"] for d in json.loads(run(busy_app, "list", "--before", "3", "--json").stdout)
    ] == [2, 1]
    newest = json.loads(run(busy_app, "list", "--since", "1h", "--limit", "1", "--json").stdout)
    assert newest[0]["id"] == 3
    assert json.loads(run(busy_app, "list", "--until", "1h", "--json").stdout) == []


def test_show(busy_app: Flask) -> None:
    text = run(busy_app, "show", "2").stdout
    assert "status:          failed" in text and "UTC" in text
    assert "RuntimeError: the ERP is down" in text and "Traceback" in text
    details = json.loads(run(busy_app, "show", "3", "--json").stdout)
    assert details["status"] == "rejected" and details["body"] == '{"ID": "half"}'
    assert details["errors"]["InvoiceID"] == ["Missing data for required field."]
    assert details["headers"]["X-Trace"] == "abc"
    assert not {"X-Api-Key", "Authorization"} & set(details["headers"])
    missing = run(busy_app, "show", "99")
    assert (
        missing.exit_code == 1 and missing.stderr.strip() == "Error: No delivery 99 in this inbox."
    )


def test_replay_one_and_all_failed(busy_app: Flask) -> None:
    assert run(busy_app, "replay", "2").stdout.strip() == "1 delivery replayed: 1 processed."
    inbox = get_state(busy_app).require_inbox()
    delivery = inbox.get(2)
    assert delivery is not None and delivery.status == "processed" and delivery.replay
    # A replay restarts the attempt count: show numbers the runs and marks the replay's.
    runs = [line for line in run(busy_app, "show", "2").stdout.splitlines() if "run " in line]
    assert [line.split(":")[0] for line in runs] == ["run 1", "run 2"]
    assert runs[0].endswith("(attempt 1)") and runs[1].endswith("(attempt 1 after a replay)")
    receivers = json.loads(run(busy_app, "show", "2", "--json").stdout)["receivers"]
    assert [(r["attempt"], r["replay"]) for r in receivers] == [(1, False), (1, True)]
    assert run(busy_app, "replay", "--failed").stdout.strip() == (
        "0 deliveries replayed: nothing to do."
    )


def test_replay_rejected_validates_again(busy_app: Flask) -> None:
    assert (
        run(busy_app, "replay", "--rejected").stdout.strip() == "1 delivery replayed: 1 rejected."
    )


def test_replay_a_time_range_of_processed_deliveries(busy_app: Flask) -> None:
    since = (utcnow() - dt.timedelta(minutes=5)).isoformat()
    with captured_events(busy_app, "payment_created") as events:
        output = run(busy_app, "replay", "--status", "processed", "--since", since).stdout
    assert output.strip() == "1 delivery replayed: 1 processed."
    assert [(e.id, e.is_replay) for e in events] == [(1, True)]


def test_replay_needs_a_choice(busy_app: Flask) -> None:
    result = run(busy_app, "replay")
    assert result.exit_code == 2 and "Say what to replay" in result.stderr


def test_replay_shows_progress_for_many(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    posweb.on("outlet_created")(lambda sender, event, **extra: None)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    for n in range(25):
        client.deliver("outlet_created", {"ID": str(n)})
    output = run(app, "replay", "--status", "pending").stdout
    assert output.startswith("Replaying")  # a progress bar (drawn in full on a terminal)
    assert output.strip().endswith("25 deliveries replayed: 25 processed.")


def test_worker_once(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_DISPATCH="worker")
    posweb.on("payment_created")(lambda sender, event, **extra: None)
    app.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    assert run(app, "worker", "--once").stdout.strip() == "1 delivery dispatched."
    assert get_state(app).require_inbox().counts()["processed"] == 1


def test_prune(busy_app: Flask) -> None:
    first = run(busy_app, "prune").stdout
    assert first.startswith("Deleted 0 processed deliveries and 0 unhandled older than 30 days,")
    assert "0:00" not in first
    second = run(busy_app, "prune", "--older-than", "0s").stdout
    assert second.startswith("Deleted 1 processed delivery and 0 unhandled older than 0 seconds,")
    assert get_state(busy_app).require_inbox().counts()["processed"] == 0


def test_db_current(app: Flask) -> None:
    app.test_client().deliver("outlet_created")  # type: ignore[attr-defined]
    current = run(app, "db", "current").stdout.strip()
    assert current == f"Inbox at revision {head()}; this code needs {head()}: up to date."


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1d12h", 129600), ("2w", 1209600), ("0.5h", 1800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "12"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


def test_moments() -> None:
    assert parse_moment("2026-11-27T10:00:00+07:00") == dt.datetime(2026, 11, 27, 3)
    assert parse_moment("2026-11-27") == dt.datetime(2026, 11, 27)
    assert abs((utcnow() - parse_moment("2h")).total_seconds() - 7200) < 5
    with pytest.raises(click.BadParameter, match="duration ago"):
        parse_moment("yesterday")
