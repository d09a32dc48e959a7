"""The delivery log page with the Flask test client: setup, access, CSRF,
filters, paging, replays (on each database); the browser tests are in
``test_dashboard_browser.py``."""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t

import pytest
from flask import Flask
from flask import redirect
from flask_wtf.csrf import CSRFProtect
from werkzeug.datastructures import MultiDict

from flask_posweb import ConfigurationError
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.config import DashboardSettings
from flask_posweb.dashboard import views
from flask_posweb.dashboard.query import pretty_json
from flask_posweb.dashboard.query import read_id
from flask_posweb.dashboard.query import read_query
from flask_posweb.inbox import MAX_ID
from flask_posweb.inbox import utcnow
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import KEY
from .conftest import MakeApp

SECRET = "a-secret-key-for-sessions-0123456789"
LOG = "/dealpos/log"
#: Past a signed 64-bit integer: SQLite's OverflowError, a 500, in 0.2.
HUGE = "99999999999999999999999"
#: Ids no store holds, as a URL, a form or a query string may give them: ``²``
#: passes ``str.isdigit`` and fails ``int``, which refuses 5,000 digits too.
NOT_IDS = [HUGE, str(MAX_ID + 1), "0", "-1", "²", "9" * 5000]


class Access:
    """An access check the test flips; counts its calls."""

    def __init__(self) -> None:
        self.answer: t.Any = True
        self.calls = 0

    def __call__(self) -> t.Any:
        self.calls += 1
        return self.answer


@pytest.fixture
def access() -> Access:
    return Access()


@pytest.fixture
def dashboard(make_app: MakeApp, posweb: PosWeb, access: Access, database_url: str) -> Flask:
    """An app with the log page on, on each database, and a receiver that
    fails when the body asks for it (until the delivery is replayed)."""

    @posweb.on("payment_created", name="ledger")
    def ledger(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
        if event.data.get("Fail") and not event.is_replay:
            raise RuntimeError(f"ledger down for {event.data['ID']}")

    return make_app(
        SECRET_KEY=SECRET,
        POSWEB_DATABASE_URL=database_url,
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=access,
    )


def client_of(app: Flask) -> PosWebClient:
    return t.cast(PosWebClient, app.test_client())


def payment(n: int, **extra: t.Any) -> dict[str, t.Any]:
    return {**json.loads(sample("payment_created")), "ID": f"p-{n}", "Number": f"N-{n}", **extra}


def deliver(client: PosWebClient, event: str = "payment_created", body: t.Any = None) -> int:
    response = client.deliver(event, body)
    return int(response.headers["X-PosWeb-Delivery"])


def listed(html: str) -> list[int]:
    """Delivery ids in the list's rows, in order."""
    return [int(n) for n in re.findall(r'<th scope="row" data-label="#"><a [^>]*>#(\d+)</a>', html)]


def token(client: PosWebClient, url: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


# -- setup ------------------------------------------------------------------------------


def test_the_page_is_off_by_default(client: PosWebClient, app: Flask) -> None:
    assert "posweb_dashboard" not in app.blueprints
    response = client.get(f"{LOG}/")
    assert response.status_code == 404 and response.is_json  # the blueprint's JSON 404


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"POSWEB_DASHBOARD_ACCESS": None}, "set POSWEB_DASHBOARD_ACCESS to a callable"),
        ({"POSWEB_DASHBOARD_ACCESS": True}, "set POSWEB_DASHBOARD_ACCESS to a callable"),
        ({"SECRET_KEY": None}, "needs SECRET_KEY"),
        # The token lives in the session: its own signing key is not enough.
        ({"SECRET_KEY": None, "WTF_CSRF_SECRET_KEY": "x" * 32}, "alone is not enough"),
        ({"POSWEB_INBOX": False}, "set POSWEB_INBOX = True"),
        ({"POSWEB_DASHBOARD_PATH": "log"}, "a path below the prefix"),
        ({"POSWEB_DASHBOARD_PATH": "/"}, "a path below the prefix"),
        ({"POSWEB_DASHBOARD_PATH": "/payment-created"}, "already a URL of this app"),
        ({"POSWEB_DASHBOARD_TIMEZONE": "Mars/Olympus"}, "a time zone name"),
        ({"POSWEB_DASHBOARD_SEARCH_RANGE": "forever"}, "POSWEB_DASHBOARD_SEARCH_RANGE"),
    ],
)
def test_a_page_that_cannot_be_closed_refuses_to_start(
    make_app: MakeApp, config: dict[str, t.Any], message: str
) -> None:
    settings = {"SECRET_KEY": SECRET, "POSWEB_DASHBOARD": True, "POSWEB_DASHBOARD_ACCESS": bool}
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        make_app(**{**settings, **config})


def test_the_page_never_turns_csrf_on_for_the_app(dashboard: Flask) -> None:
    assert "csrf" not in dashboard.extensions  # no app-wide CSRFProtect
    client = client_of(dashboard)
    client.get(f"{LOG}/")  # a session with a CSRF token exists now
    assert client.deliver("payment_created").status_code == 200  # DealPOS sends no token


def test_the_path_and_time_zone_are_settings(make_app: MakeApp) -> None:
    app = make_app(
        SECRET_KEY=SECRET,
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=lambda: True,
        POSWEB_DASHBOARD_PATH="/ops/deliveries/",
        POSWEB_DASHBOARD_TIMEZONE="Asia/Jakarta",
    )
    client = client_of(app)
    deliver(client)
    stored = get_state(app).require_inbox().deliveries()[0].received_at
    page = client.get("/dealpos/ops/deliveries/").get_data(as_text=True)
    local = stored + dt.timedelta(hours=7)  # WIB, no daylight saving
    assert f"{local:%Y-%m-%d %H:%M:%S} WIB" in page
    missing = client.get("/dealpos/ops/deliveries/nowhere")
    assert missing.status_code == 404 and missing.mimetype == "text/html"  # the host's 404


# -- access -----------------------------------------------------------------------------


def test_every_request_asks_the_access_check(dashboard: Flask, access: Access) -> None:
    client = client_of(dashboard)
    delivery_id = deliver(client)
    assert client.get(f"{LOG}/").status_code == 200
    csrf = token(client, f"{LOG}/{delivery_id}")
    for answer in (False, None, 0):
        access.answer = answer
        for response in (
            client.get(f"{LOG}/"),
            client.get(f"{LOG}/{delivery_id}"),
            client.get(f"{LOG}/loyalty"),
            client.get(f"{LOG}/static/log.css"),
            client.post(f"{LOG}/{delivery_id}/replay", data={"csrf_token": csrf}),
        ):
            assert response.status_code == 403
            assert b"payment_created" not in response.data
    assert get_state(dashboard).require_inbox().get(delivery_id).generation == 0  # type: ignore[union-attr]
    assert access.calls >= 16


def test_the_access_check_may_answer_with_a_login_redirect(
    dashboard: Flask, access: Access
) -> None:
    access.answer = redirect("/login?next=/dealpos/log/")
    response = client_of(dashboard).get(f"{LOG}/")
    assert response.status_code == 302 and response.location == "/login?next=/dealpos/log/"


def test_an_access_check_that_does_not_answer_yes_or_no_admits_no_one(
    dashboard: Flask, access: Access
) -> None:
    class User:
        def is_admin(self) -> bool:
            return False

    access.answer = User().is_admin  # forgot the (): a bound method is true
    with pytest.raises(TypeError, match="must return True, False or a response"):
        client_of(dashboard).get(f"{LOG}/")


def test_the_page_is_never_cached_nor_framed(dashboard: Flask) -> None:
    response = client_of(dashboard).get(f"{LOG}/")
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # none: default-src


# -- CSRF -------------------------------------------------------------------------------


def test_a_replay_without_a_valid_csrf_token_is_refused(dashboard: Flask) -> None:
    client = client_of(dashboard)
    delivery_id = deliver(client, body=payment(1, Fail=True))
    other = client_of(dashboard)
    foreign = token(other, f"{LOG}/{delivery_id}")  # another session's token
    token(client, f"{LOG}/{delivery_id}")
    for form in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}, {"csrf_token": foreign}):
        response = client.post(f"{LOG}/{delivery_id}/replay", data=form)
        assert response.status_code == 400
        assert "This form cannot be sent" in response.get_data(as_text=True)
    refused = client.post(f"{LOG}/replay", data={"upto": str(delivery_id)})
    assert refused.status_code == 400
    stored = get_state(dashboard).require_inbox().get(delivery_id)
    assert stored is not None and stored.status == "failed" and stored.attempts == 1


@pytest.mark.parametrize("order", ["CSRFProtect first", "blueprint first"])
def test_app_wide_csrf_protection_lets_dealpos_through(
    posweb: PosWeb, tmp_path: t.Any, access: Access, order: str
) -> None:
    """A host that turns on Flask-WTF's CSRFProtect for its whole app (its
    forms) must not refuse DealPOS, whose POSTs carry credentials, not a
    session's token; its own forms and the log page's stay protected."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        POSWEB_API_KEYS=[KEY],
        POSWEB_OAUTH_CLIENTS={"dealpos": "client-secret-0123456789"},
        POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=access,
    )
    app.add_url_rule("/host-form", "host_form", lambda: "saved", methods=["POST"])
    app.test_client_class = PosWebClient
    if order == "CSRFProtect first":
        CSRFProtect(app)
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    if order == "blueprint first":
        CSRFProtect(app)
    try:
        client = client_of(app)
        delivered = client.deliver("payment_created")
        assert delivered.status_code == 200, delivered.json
        token_url = client.post(
            "/dealpos/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic ZGVhbHBvczpjbGllbnQtc2VjcmV0LTAxMjM0NTY3ODk="},
        )
        assert token_url.status_code == 200
        assert client.post("/host-form").status_code == 400  # the host's own: still protected
        delivery_id = int(delivered.headers["X-PosWeb-Delivery"])
        refused = client.post(f"{LOG}/{delivery_id}/replay")
        assert refused.status_code == 400  # the log page: still protected
    finally:
        get_state(app).close()


def test_replay_one_runs_it_in_the_request(dashboard: Flask) -> None:
    client = client_of(dashboard)
    delivery_id = deliver(client, body=payment(1, Fail=True))
    page = client.get(f"{LOG}/{delivery_id}").get_data(as_text=True)
    assert "RuntimeError: ledger down for p-1" in page
    csrf = token(client, f"{LOG}/{delivery_id}")
    response = client.post(f"{LOG}/{delivery_id}/replay", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.location == f"{LOG}/{delivery_id}"
    shown = client.get(response.location).get_data(as_text=True)
    assert "Replayed just now: the delivery is now processed." in shown
    assert "attempt 1 after a replay," in shown and "attempt 1," in shown  # the first run
    stored = get_state(dashboard).require_inbox().get(delivery_id)
    assert stored is not None and stored.status == "processed" and stored.replay
    # Post/Redirect/Get: a reload shows the page again, without the outcome,
    # and replays nothing.
    again = client.get(response.location).get_data(as_text=True)
    assert "Replayed just now" not in again
    reloaded = get_state(dashboard).require_inbox().get(delivery_id)
    assert reloaded is not None and reloaded.attempts == stored.attempts
    assert client.post(f"{LOG}/999999/replay", data={"csrf_token": csrf}).status_code == 404
    assert client.get(f"{LOG}/{delivery_id}/replay").status_code == 405


def test_a_replay_outcome_not_shown_in_time_is_not_shown_later(
    dashboard: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redirect never followed (a 503, a closed tab) must not make a later
    visit say "Replayed just now"."""
    client = client_of(dashboard)
    delivery_id = deliver(client, body=payment(1, Fail=True))
    csrf = token(client, f"{LOG}/{delivery_id}")
    response = client.post(f"{LOG}/{delivery_id}/replay", data={"csrf_token": csrf})
    monkeypatch.setattr(views, "REPLAYED_SHOWN_FOR", -1)  # as if a minute went by
    assert "Replayed just now" not in client.get(response.location).get_data(as_text=True)


def test_replay_the_failed_ones_asks_first_then_replays_those_confirmed(
    dashboard: Flask,
) -> None:
    client = client_of(dashboard)
    ok = deliver(client, body=payment(1))
    failed = [deliver(client, body=payment(n, Fail=True)) for n in (2, 3)]
    invoice = deliver(client, "invoice_created")
    confirm = client.get(f"{LOG}/replay?event=payment_created")
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "<strong>2</strong> failed deliveries" in page
    upto = re.search(r'name="upto" value="(\d+)"', page)
    assert upto is not None and int(upto.group(1)) == failed[-1]
    later = deliver(client, body=payment(4, Fail=True))  # fails after the count was shown
    csrf = token(client, f"{LOG}/replay?event=payment_created")
    form = {"csrf_token": csrf, "event": "payment_created", "upto": upto.group(1)}
    done = client.post(f"{LOG}/replay", data=form)
    assert done.status_code == 303
    assert done.location == f"{LOG}/replayed?event=payment_created"
    shown = client.get(done.location)
    text = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "2 deliveries replayed" in text
    assert "1 failed delivery matches the filter now" in text
    reload = client.get(done.location)  # shown once: then the list, and no replay
    assert reload.status_code == 303 and reload.location == f"{LOG}/?event=payment_created"
    inbox = get_state(dashboard).require_inbox()
    assert [inbox.get(i).status for i in failed] == ["processed", "processed"]  # type: ignore[union-attr]
    assert inbox.get(later).status == "failed"  # type: ignore[union-attr]
    assert inbox.get(ok).generation == 0 and inbox.get(invoice).generation == 0  # type: ignore[union-attr]
    nothing = client.get(f"{LOG}/replay?status=processed").get_data(as_text=True)
    assert "nothing to replay" in nothing


def test_replay_the_failed_ones_is_bounded_per_request(
    dashboard: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "BULK_LIMIT", 2)
    client = client_of(dashboard)
    failed = [deliver(client, body=payment(n, Fail=True)) for n in range(3)]
    page = client.get(f"{LOG}/replay").get_data(as_text=True)
    assert "the oldest 2 now" in page
    csrf = token(client, f"{LOG}/replay")
    done = client.post(f"{LOG}/replay", data={"csrf_token": csrf, "upto": str(failed[-1])})
    assert "2 deliveries replayed" in client.get(done.location).get_data(as_text=True)
    inbox = get_state(dashboard).require_inbox()
    assert [inbox.get(i).status for i in failed] == ["processed", "processed", "failed"]  # type: ignore[union-attr]


# -- the list: filters, counts, paging ---------------------------------------------------


def test_the_list_filters_by_status_event_and_time(dashboard: Flask) -> None:
    client = client_of(dashboard)
    ok = deliver(client, body=payment(1))
    bad = deliver(client, body=payment(2, Fail=True))
    invoice = deliver(client, "invoice_created")
    rejected = deliver(client, body={"ID": "p-x"})
    page = client.get(f"{LOG}/").get_data(as_text=True)
    assert listed(page) == [rejected, invoice, bad, ok]
    counts = (("processed", 1), ("failed", 1), ("unhandled", 1), ("rejected", 1), ("dead", 0))
    for status, n in counts:
        assert re.search(rf">{status} <span class=\"n\">{n}</span>", page), status
    assert listed(client.get(f"{LOG}/?status=failed").get_data(as_text=True)) == [bad]
    both = client.get(f"{LOG}/?status=failed&status=rejected").get_data(as_text=True)
    assert listed(both) == [rejected, bad]
    by_event = client.get(f"{LOG}/?event=invoice_created").get_data(as_text=True)
    assert listed(by_event) == [invoice]
    assert 'unhandled <span class="n">1</span>' in by_event  # counts follow the filter
    assert 'processed <span class="n">0</span>' in by_event
    now = utcnow()
    since = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    recent = client.get(f"{LOG}/?since={since}").get_data(as_text=True)
    assert listed(recent) == [rejected, invoice, bad, ok]
    until = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert listed(client.get(f"{LOG}/?until={until}").get_data(as_text=True)) == []


def test_text_search_needs_a_bounded_time_range(dashboard: Flask) -> None:
    client = client_of(dashboard)
    deliver(client, body=payment(1))
    wanted = deliver(client, body=payment(2, Note="Kopi susu"))
    unbounded = client.get(f"{LOG}/?text=Kopi")
    assert unbounded.status_code == 400
    assert "reads every delivery in the time range" in unbounded.get_data(as_text=True)
    assert listed(unbounded.get_data(as_text=True)) == []
    old = (utcnow() - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    assert client.get(f"{LOG}/?text=Kopi&since={old}").status_code == 400  # too long
    since = (utcnow() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    found = client.get(f"{LOG}/?text=Kopi&since={since}")
    assert found.status_code == 200 and listed(found.get_data(as_text=True)) == [wanted]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "There is no status &#39;lost&#39;."),
        ("event=payment_lost", "There is no event &#39;payment_lost&#39;."),
        ("since=yesterday", "“From” is not a time"),
        ("since=2026-11-20&until=2026-11-19", "“From” must be earlier than “to”."),
        ("before=-1", "not a delivery id"),
        (f"before={HUGE}", "not a delivery id"),
        (f"before={MAX_ID + 1}", "not a delivery id"),
        ("before=%C2%B2", "not a delivery id"),
        ("before=" + "9" * 5000, "not a delivery id"),
        ("until=9999-12-31", "“To” is at the edge of the calendar"),
        ("since=0001-01-01T00:00%2B05:00", "“From” is at the edge of the calendar"),
        ("text=" + "x" * 201 + "&since=2026-11-20", "at most 200 characters"),
    ],
)
def test_a_wrong_filter_says_what_is_wrong(dashboard: Flask, query: str, message: str) -> None:
    client = client_of(dashboard)
    deliver(client)
    response = client.get(f"{LOG}/?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert listed(response.get_data(as_text=True)) == []


def test_keyset_paging_walks_every_delivery_once(
    dashboard: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    client = client_of(dashboard)
    ids = [deliver(client, body=payment(n)) for n in range(7)]
    seen, url = [], f"{LOG}/?status=processed"
    for _ in range(5):
        page = client.get(url).get_data(as_text=True)
        seen += listed(page)
        older = re.search(r'<a rel="next" href="([^"]+)"', page)
        if older is None:
            break
        url = older.group(1).replace("&amp;", "&")
        assert "status=processed" in url  # the filter is kept
    assert seen == ids[::-1]


@pytest.mark.parametrize("query", [f"before={HUGE}", "before=%C2%B2", "until=9999-12-31"])
def test_the_replay_pages_refuse_a_wrong_filter_too(dashboard: Flask, query: str) -> None:
    client = client_of(dashboard)
    deliver(client, body=payment(1, Fail=True))
    confirm = client.get(f"{LOG}/replay?{query}")
    assert confirm.status_code == 400 and confirm.mimetype == "text/html"
    assert 'name="upto"' not in confirm.get_data(as_text=True)  # nothing to confirm
    assert client.get(f"{LOG}/replayed?{query}").status_code == 303  # nothing replayed: the list


@pytest.mark.parametrize("upto", [*NOT_IDS, "", None])
def test_a_replay_form_that_does_not_say_up_to_which_id_is_refused(
    dashboard: Flask, upto: str | None
) -> None:
    client = client_of(dashboard)
    failed = deliver(client, body=payment(1, Fail=True))
    form = {"csrf_token": token(client, f"{LOG}/replay")}
    if upto is not None:
        form["upto"] = upto
    refused = client.post(f"{LOG}/replay", data=form)
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert "does not say up to which delivery" in refused.get_data(as_text=True)
    assert get_state(dashboard).require_inbox().get(failed).status == "failed"  # type: ignore[union-attr]


# -- one delivery, loyalty ---------------------------------------------------------------


@pytest.mark.parametrize("delivery_id", [HUGE, str(MAX_ID + 1), "0", "%C2%B2", "9" * 5000])
def test_an_id_no_store_holds_is_a_404_page_never_a_database_error(
    dashboard: Flask, delivery_id: str
) -> None:
    client = client_of(dashboard)
    kept = deliver(client, body=payment(1, Fail=True))
    shown = client.get(f"{LOG}/{delivery_id}")
    assert shown.status_code == 404 and shown.mimetype == "text/html"
    csrf = token(client, f"{LOG}/{kept}")
    replayed = client.post(f"{LOG}/{delivery_id}/replay", data={"csrf_token": csrf})
    assert replayed.status_code == 404 and replayed.mimetype == "text/html"
    assert get_state(dashboard).require_inbox().get(kept).status == "failed"  # type: ignore[union-attr]


def test_the_largest_id_a_store_holds_reaches_it(dashboard: Flask) -> None:
    client = client_of(dashboard)
    kept = deliver(client)
    missing = client.get(f"{LOG}/{MAX_ID}")
    assert missing.status_code == 404 and f"No delivery #{MAX_ID}" in missing.get_data(True)
    csrf = token(client, f"{LOG}/{kept}")
    replayed = client.post(f"{LOG}/{MAX_ID}/replay", data={"csrf_token": csrf})
    assert replayed.status_code == 404 and f"No delivery #{MAX_ID}" in replayed.get_data(True)
    page = client.get(f"{LOG}/?before={MAX_ID}")
    assert page.status_code == 200 and listed(page.get_data(as_text=True)) == [kept]


def test_the_detail_shows_what_a_person_needs(dashboard: Flask) -> None:
    client = client_of(dashboard)
    failed = deliver(client, body=payment(1, Fail=True))
    page = client.get(f"{LOG}/{failed}").get_data(as_text=True)
    assert 'ledger</strong>: <span class="status status-failed">failed' in page
    assert "RuntimeError: ledger down for p-1" in page and "<details open>" in page
    assert "  &#34;Amount&#34;: 75240," in page  # pretty-printed, the number as sent
    assert "Content-Type" in page and KEY not in page and "X-Api-Key" not in page
    rejected = deliver(client, body={"ID": "p-x"})
    page = client.get(f"{LOG}/{rejected}").get_data(as_text=True)
    assert "Why it was rejected" in page and "<code>InvoiceID</code>" in page
    customer = json.loads(sample("customer_created"))
    del customer["Email"]
    lacking = deliver(client, "customer_created", customer)
    page = client.get(f"{LOG}/{lacking}").get_data(as_text=True)
    assert "Fields the body lacked" in page and "<li><code>Email</code></li>" in page
    missing = client.get(f"{LOG}/999999")
    assert missing.status_code == 404 and "No delivery #999999" in missing.get_data(as_text=True)


def test_loyalty_answers_are_shown_read_only(dashboard: Flask, posweb: PosWeb) -> None:
    posweb.loyalty.order_complete(lambda call: 68)
    client = client_of(dashboard)
    assert client.call_loyalty("order_complete").json == {"reward": 68}
    page = client.get(f"{LOG}/loyalty").get_data(as_text=True)
    assert "Loyalty Point On Order Complete" in page and '{"reward": 68}' in page
    assert "<form" not in page


# -- reading the form, showing a body ----------------------------------------------------


def test_read_query_reads_times_in_the_page_zone() -> None:
    settings = DashboardSettings(
        access=bool, path="/log", timezone=dt.timezone(dt.timedelta(hours=7)), search_range=86400
    )
    now = dt.datetime(2026, 11, 20, 12, 0)
    args = MultiDict([("since", "2026-11-21T08:30"), ("until", "2026-11-20")])
    query = read_query(args, settings, now)
    assert query.errors == ("“From” must be earlier than “to”.",)
    query = read_query(MultiDict([("since", "2026-11-20"), ("until", "2026-11-20")]), settings, now)
    assert query.since == dt.datetime(2026, 11, 19, 17, 0)  # midnight WIB in UTC
    assert query.until == dt.datetime(2026, 11, 20, 17, 0)  # a date "to" includes the day
    assert query.until_text == "2026-11-21T00:00"  # shown again as the input takes it
    text = read_query(MultiDict([("text", "Kopi"), ("since", "2026-11-19T11:00")]), settings, now)
    assert text.errors and "at most 1 day" in text.errors[0]


@pytest.mark.parametrize("text", [*NOT_IDS, "", " 1", "1 ", "1.0", "0x10", "١"])
def test_read_id_takes_only_ids_a_store_can_hold(text: str) -> None:
    assert read_id(text) is None


def test_read_id_reads_ascii_digits_up_to_the_largest_id() -> None:
    assert [read_id(text) for text in ("1", "007", str(MAX_ID))] == [1, 7, MAX_ID]
    assert read_id(None) is None


def test_pretty_json_keeps_numbers_as_sent() -> None:
    raw = b'{"Amount": 75240.50, "Lines": [{"Qty": 1e2}], "Empty": {}, "Name": "Kopi \\u00e9"}'
    assert pretty_json(raw) == (
        '{\n  "Amount": 75240.50,\n  "Lines": [\n    {\n      "Qty": 1E+2\n    }\n  ],\n'
        '  "Empty": {},\n  "Name": "Kopi é"\n}'
    )
    assert pretty_json(b"\xff not json") is None
    assert pretty_json(b"[" * 100_000) is None
