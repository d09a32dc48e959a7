"""Every event through the real HTTP endpoint, and every status code of the table."""

from __future__ import annotations

import io
import json
import typing as t

import pytest
from flask import Flask
from werkzeug.exceptions import InternalServerError

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.exceptions import HeadersTooLargeError
from flask_posweb.headers import check_bounds
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_events

from .conftest import MakeApp
from .conftest import payload_bytes

KEY = {"X-API-Key": "test-key-0123456789"}


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_event_is_received_and_signalled(app: Flask, client: PosWebClient, name: str) -> None:
    with captured_events(app) as events:
        response = client.deliver(name)
    assert response.status_code == 200
    assert response.json == {"status": "success"}
    assert [e.name for e in events] == [name]
    event = events[0]
    assert event.raw == sample(name)
    assert event.id == int(response.headers["X-PosWeb-Delivery"])
    assert event.attempt == 1 and not event.is_replay


def test_a_real_payload_reaches_the_handler_with_every_field(
    app: Flask, client: PosWebClient
) -> None:
    raw = payload_bytes("payment_written_off_drifted")
    with captured_events(app, "payment_written_off") as events:
        assert client.deliver("payment_written_off", raw).status_code == 200
    (event,) = events
    assert event.raw == raw
    sent = json.loads(raw)
    assert set(event.data) == set(sent)  # known and unknown alike
    assert event.data["LoyaltyMeta"] == {"Tier": "Gold", "Since": "2019-04-01"}  # as received
    assert str(event.data["Amount"]) == "1240.50"


def test_posting_the_same_bytes_keeps_them_exactly(app: Flask, client: PosWebClient) -> None:
    raw = (
        b'{"ID":"p-1", "InvoiceID":"i-1","Outlet":"K","Number":"N","Amount":10.10,'
        b'"Method":"Cash","Date":"2021-08-20","Created":"2021-08-20T10:28:56.6691072",'
        b'"Creator":"Dewi",  "\\u00e9t\\u00e9": "summer"}'
    )
    with captured_events(app) as events:
        assert client.deliver("payment_created", raw).status_code == 200
    assert events[0].raw == raw
    assert events[0].data["été"] == "summer"


def error(response: t.Any, status: int) -> dict[str, t.Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = t.cast(dict[str, t.Any], response.json)
    assert body["status"] == "error" and body["message"]
    return body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00", "must be UTF-8"),
        (b"\x80{}", "not valid UTF-8"),
        (b"[1, 2]", "not an array"),
        (b'"text"', "not a string"),
        (b"42", "not a number"),
        (b"null", "not null"),
        (b'{"Amount": NaN}', "not a JSON number"),
        (b'{"ID": "p-1", "ID": "p-2"}', "appears twice"),
    ],
)
def test_400_when_the_body_is_not_one_json_object(
    client: PosWebClient, raw: bytes, reason: str
) -> None:
    body = error(client.deliver("payment_created", raw), 400)
    assert reason in body["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"Authorization": "Bearer test-key"}]
)
def test_401_without_valid_credentials(client: PosWebClient, headers: dict[str, str]) -> None:
    response = client.post(
        "/dealpos/payment-created", json=json.loads(sample("payment_created")), headers=headers
    )
    body = error(response, 401)
    assert body["message"] == "Missing or invalid credentials."
    assert (
        response.headers["WWW-Authenticate"]
        == 'ApiKey realm="DealPOS webhooks", header="X-API-Key"'
    )
    assert "wrong" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "method", ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "BREW"]
)
@pytest.mark.parametrize(
    "path", ["/dealpos/payment-created", "/dealpos/loyalty/member-points", "/dealpos/oauth/token"]
)
def test_405_in_json_for_any_other_method(client: PosWebClient, method: str, path: str) -> None:
    """Hostile bytes, finding 6: 0.1 answered TRACE and PROPFIND with Flask's HTML 405."""
    response = client.open(path, method=method, headers=KEY)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    if method != "HEAD":
        error(response, 405)


@pytest.mark.parametrize("path", ["/dealpos/payment-createdd", "/dealpos/", "/dealpos/a/b/c"])
def test_404_in_json_for_an_unknown_url_under_the_prefix(client: PosWebClient, path: str) -> None:
    """Hostile bytes, finding 6: a typo in the URL pasted into DealPOS got the host's HTML 404."""
    body = error(client.post(path, headers=KEY), 404)
    assert "flask posweb events" in body["message"]


@pytest.mark.parametrize(
    ("path", "merged"),
    [
        ("/dealpos//payment-created", "/dealpos/payment-created"),
        ("/dealpos///loyalty//member-points", "/dealpos/loyalty/member-points"),
        ("/dealpos//oauth/token", "/dealpos/oauth/token"),
    ],
)
def test_a_slash_merging_redirect_is_json_with_its_location(
    app: Flask, client: PosWebClient, path: str, merged: str
) -> None:
    """Hostile bytes round two, finding 5: werkzeug's redirect to the URL with
    its slashes merged was an HTML page."""
    response = client.post(path, json=json.loads(sample("payment_created")), headers=KEY)
    body = error(response, 308)
    assert response.headers["Location"] == f"http://localhost{merged}"
    assert f"This URL is 'http://localhost{merged}'" in body["message"]
    assert not any(get_state(app).require_inbox().counts().values())  # none received


@pytest.mark.parametrize(
    ("path", "meant"),
    [
        ("/dealpos/payment_created", "/dealpos/payment-created"),
        ("/dealpos/Payment-Created/", "/dealpos/payment-created"),
        ("/dealpos/payment-createdd", "/dealpos/payment-created"),
        ("/dealpos/loyalty/member_points", "/dealpos/loyalty/member-points"),
        ("/dealpos/oauth/token/", "/dealpos/oauth/token"),
        ("/dealpos/nothing-like-it", None),
        ("/dealpos/shift-opened", None),  # no such event: not "shift-closed"
        ("/dealpos/", None),
    ],
)
def test_404_suggests_the_url_a_typo_meant(
    make_app: MakeApp, posweb: PosWeb, path: str, meant: str | None
) -> None:
    posweb.loyalty.member_points(lambda call: 0)
    app = make_app(
        POSWEB_OAUTH_CLIENTS={"dealpos": "client-secret-0123456789"}, SECRET_KEY="k" * 16
    )
    body = error(app.test_client().post(path, headers=KEY), 404)
    if meant is None:
        assert "Did you mean" not in body["message"]
    else:
        assert f"Did you mean '{meant}'?" in body["message"]


def test_404_suggests_only_urls_that_answer(client: PosWebClient) -> None:
    """Without OAuth clients the token URL is a 404, and a loyalty call without a
    provider a 501: suggesting them would send DealPOS to a refusal."""
    for path in ("/dealpos/oauth/token/", "/dealpos/loyalty/member_points"):
        assert "Did you mean" not in error(client.post(path, headers=KEY), 404)["message"]


def test_404_compares_only_below_the_prefix(posweb: PosWeb, tmp_path: t.Any) -> None:
    """A long prefix shared by every URL must not make unrelated paths look
    alike; a blueprint registered under another name suggests all the same."""
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(TESTING=True, POSWEB_API_KEYS=[KEY["X-API-Key"]])
    prefix = "/integrations/dealpos-webhooks/production/v1"
    app.register_blueprint(posweb.blueprint, url_prefix=prefix, name="shop")
    client = app.test_client()
    for unrelated in ("/hello", "/x", "/refund-created", "/stock-updated"):
        body = error(client.post(prefix + unrelated, headers=KEY), 404)
        assert "Did you mean" not in body["message"], unrelated
    body = error(client.post(prefix + "/Payment_Created", headers=KEY), 404)
    assert f"Did you mean '{prefix}/payment-created'?" in body["message"]
    get_state(app).close()


def test_routes_declare_only_the_methods_they_serve(app: Flask) -> None:
    ours = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    document = ours.pop("posweb.openapi_json")  # the OpenAPI description: read, never posted
    assert document.methods == {"GET", "HEAD"}
    health = ours.pop("posweb.health")  # the probes' answer: read, never posted
    assert health.methods == {"GET", "HEAD"}
    ours = {name: rule for name, rule in ours.items() if name.startswith("posweb.")}
    assert ours and all(rule.methods == {"POST"} for rule in ours.values())


def test_413_by_content_length_before_reading(make_app: MakeApp) -> None:
    client = make_app(POSWEB_MAX_CONTENT_LENGTH=100).test_client()
    body = error(client.deliver("payment_created", b"{" + b" " * 200 + b"}"), 413)
    assert "100 bytes" in body["message"]


def test_413_while_streaming_without_content_length(client: PosWebClient) -> None:
    stream = io.BytesIO(b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    response = client.post(
        "/dealpos/payment-created",
        input_stream=stream,
        headers=KEY,
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    error(response, 413)


def cut_short(body: bytes, declared: int, *, terminated: bool) -> dict[str, t.Any]:
    """What the test client needs to post ``body`` as the start of a longer one:
    the ``Content-Length`` of ``declared`` bytes, and a server that ends the
    stream itself (gunicorn sets ``wsgi.input_terminated``) or werkzeug's
    own limited stream."""
    overrides: dict[str, t.Any] = {"CONTENT_LENGTH": str(declared)}
    if terminated:
        overrides["wsgi.input_terminated"] = True
    return {
        "input_stream": io.BytesIO(body),
        "content_type": "application/json",
        "headers": KEY,
        "environ_overrides": overrides,
    }


@pytest.mark.parametrize("terminated", [True, False], ids=["server-ends-it", "werkzeug-ends-it"])
@pytest.mark.parametrize("arrived", ["a-valid-body", "a-prefix"])
def test_a_body_cut_short_of_its_content_length_is_a_400_and_never_stored(
    app: Flask, client: PosWebClient, terminated: bool, arrived: str
) -> None:
    """Hostile bytes round two, finding 1: the client went away mid-body, and
    what arrived was stored (and answered 200 when it parsed)."""
    whole = sample("payment_created")
    body, declared = (whole, len(whole) + 400) if arrived == "a-valid-body" else (whole[:100], 500)
    with captured_events(app) as events:
        response = client.post(
            "/dealpos/payment-created", **cut_short(body, declared, terminated=terminated)
        )
    message = error(response, 400)["message"]
    assert f"{declared} bytes its Content-Length declares" in message
    assert (f"after {len(body)} of the" in message) == terminated  # werkzeug does not count
    assert "X-PosWeb-Delivery" not in response.headers
    assert not any(get_state(app).require_inbox().counts().values())  # not even as rejected
    assert list(events) == []


def test_a_body_cut_short_is_refused_at_the_token_url_too(make_app: MakeApp) -> None:
    app = make_app(
        POSWEB_OAUTH_CLIENTS={"dealpos": "client-secret-0123456789"}, SECRET_KEY="k" * 16
    )
    form = b"grant_type=client_credentials&client_id=dealpos&client_secret=client-secret-0123456789"
    options = cut_short(form, len(form) + 10, terminated=True)
    options["content_type"] = "application/x-www-form-urlencoded"
    response = app.test_client().post("/dealpos/oauth/token", **options)
    assert response.status_code == 400 and "Content-Length declares" in response.json["message"]
    assert "access_token" not in response.json


def test_a_body_that_fills_its_content_length_is_whole(client: PosWebClient) -> None:
    whole = sample("payment_created")
    response = client.post(
        "/dealpos/payment-created", **cut_short(whole, len(whole), terminated=True)
    )
    assert response.status_code == 200


def test_header_bounds_are_inclusive_and_count_names_and_values() -> None:
    check_bounds({"A": "x" * 9, "B": ""}, max_count=2, max_bytes=11)  # 10 + 1 bytes
    with pytest.raises(HeadersTooLargeError, match="3 headers; at most 2"):
        check_bounds({"A": "", "B": "", "C": ""}, max_count=2, max_bytes=100)
    with pytest.raises(HeadersTooLargeError, match="12 bytes; at most 11") as refused:
        check_bounds({"A": "x" * 11}, max_count=2, max_bytes=11)
    assert refused.value.status_code == 431


def test_431_for_the_headers_of_the_issue(app: Flask, client: PosWebClient) -> None:
    """Hostile bytes round two, finding 4: 95 headers of 8,000 bytes each (761 KB,
    each within gunicorn's per-header bound) were kept with one delivery."""
    padding = {f"X-Pad-{n}": "x" * 8000 for n in range(95)}
    response = client.deliver("payment_created", headers=padding)
    message = error(response, 431)["message"]
    assert "bytes; at most 32768 are accepted" in message
    assert "X-PosWeb-Delivery" not in response.headers
    assert not any(get_state(app).require_inbox().counts().values())


@pytest.mark.parametrize("credentials", [KEY, {}], ids=["authenticated", "unauthenticated"])
def test_431_for_too_many_headers_comes_before_the_credentials(
    make_app: MakeApp, credentials: dict[str, str]
) -> None:
    app = make_app(POSWEB_MAX_HEADERS=20)
    extra = {f"X-Extra-{n}": "1" for n in range(20)}
    response = app.test_client().post(
        "/dealpos/payment-created",
        json=json.loads(sample("payment_created")),
        headers={**credentials, **extra},
    )
    assert "headers; at most 20 are accepted" in error(response, 431)["message"]
    assert "WWW-Authenticate" not in response.headers
    assert not any(get_state(app).require_inbox().counts().values())


def test_headers_within_their_bounds_are_kept(make_app: MakeApp) -> None:
    app = make_app(POSWEB_MAX_HEADERS=40, POSWEB_MAX_HEADER_BYTES=4096)
    extra = {f"X-Extra-{n}": "y" * 60 for n in range(30)}  # about 2,400 bytes
    client = t.cast(PosWebClient, app.test_client())
    response = client.deliver("payment_created", headers=extra)
    assert response.status_code == 200
    kept = get_state(app).require_inbox().get(int(response.headers["X-PosWeb-Delivery"]))
    assert kept is not None and kept.headers["X-Extra-29"] == "y" * 60


def test_default_limit_is_one_mebibyte(client: PosWebClient) -> None:
    def sized(size: int) -> bytes:
        payload = json.loads(sample("product_created")) | {"Description": ""}
        padding = size - len(json.dumps(payload).encode())
        return json.dumps(payload | {"Description": "x" * padding}).encode()

    assert len(sized(1024 * 1024)) == 1024 * 1024
    assert client.deliver("product_created", sized(1024 * 1024)).status_code == 200
    error(client.deliver("product_created", sized(1024 * 1024 + 1)), 413)


def test_a_smaller_app_limit_wins(make_app: MakeApp) -> None:
    client = make_app(MAX_CONTENT_LENGTH=50).test_client()
    error(client.deliver("payment_created"), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_415_when_not_json(client: PosWebClient, content_type: str) -> None:
    body = error(client.deliver("payment_created", content_type=content_type), 415)
    assert "application/json" in body["message"]


def test_a_compressed_body_is_refused_and_kept(app: Flask, client: PosWebClient) -> None:
    import gzip

    from flask_posweb.state import get_state

    packed = gzip.compress(sample("payment_created"))
    response = client.deliver("payment_created", packed, headers={"Content-Encoding": "gzip"})
    body = error(response, 415)
    assert "Content-Encoding 'gzip' is not accepted" in body["message"]
    kept = get_state(app).require_inbox().get(int(response.headers["X-PosWeb-Delivery"]))
    assert kept is not None and kept.status == "rejected" and kept.raw == packed


def test_json_with_a_charset_or_suffix_is_json(client: PosWebClient) -> None:
    assert (
        client.deliver(
            "payment_created", content_type="application/json; charset=utf-8"
        ).status_code
        == 200
    )
    assert (
        client.deliver("invoice_created", content_type="application/vnd.dealpos+json").status_code
        == 200
    )


def test_422_names_every_bad_field_by_its_path(client: PosWebClient) -> None:
    payload = json.loads(sample("transfer_order_created"))
    del payload["Number"]
    payload["Variants"][0]["Quantity"] = "six"
    payload["Date"] = "yesterday"
    body = error(client.deliver("transfer_order_created", payload), 422)
    assert body["errors"] == {
        "Number": ["Missing data for required field."],
        "Variants.0.Quantity": ["Not a valid number."],
        "Date": ["Not a valid date or date-time."],
    }


def _explode(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
    raise RuntimeError("secret internals test-key")


def test_a_bug_in_production_is_a_json_500_without_secrets_or_traceback(
    app: Flask,
    client: PosWebClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import flask_posweb.web.views

    monkeypatch.setattr(flask_posweb.web.views, "receive", _explode)
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    response = client.deliver("payment_created")
    body = error(response, 500)
    assert body == {"status": "error", "message": InternalServerError.description}
    assert "test-key" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # Flask logged it, with its traceback


@pytest.mark.parametrize(
    "setting", [{"TESTING": True}, {"DEBUG": True}, {"PROPAGATE_EXCEPTIONS": True}]
)
def test_a_bug_propagates_as_flask_does_for_the_debugger_and_tests(
    app: Flask, client: PosWebClient, monkeypatch: pytest.MonkeyPatch, setting: dict[str, bool]
) -> None:
    """Pallets-grade details: an ``Exception`` handler on the blueprint swallowed bugs."""
    import flask_posweb.web.views

    monkeypatch.setattr(flask_posweb.web.views, "receive", _explode)
    app.config.update({"TESTING": False, **setting})
    with pytest.raises(RuntimeError, match="secret internals"):
        client.deliver("payment_created")


def test_error_handling_stays_inside_the_blueprint(app: Flask, client: PosWebClient) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise KeyError("app's own bug")

    @app.get("/only-get")
    def only_get() -> str:
        return "ok"

    assert client.get("/nowhere").mimetype == "text/html"  # the app's 404
    assert client.post("/only-get").mimetype == "text/html"  # the app's 405
    assert client.open("/only-get", method="TRACE").mimetype == "text/html"
    assert client.get("/dealposx/payment-created").mimetype == "text/html"  # not our prefix
    assert client.get("/dealpos/no-such-event").mimetype == "application/json"  # ours
    with pytest.raises(KeyError):  # TESTING: the app's errors propagate as usual
        client.get("/boom")


def test_success_is_exactly_what_dealpos_expects(client: PosWebClient) -> None:
    response = client.deliver("payment_created")
    assert response.status_code == 200
    assert response.get_json() == {"status": "success"}


def test_init_app_uses_the_configured_prefix(tmp_path: t.Any) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    key = "k" * 16
    app.config.update(TESTING=True, POSWEB_API_KEYS=[key], POSWEB_URL_PREFIX="/hooks/pos")
    posweb = PosWeb(app)
    seen: list[WebhookEvent[t.Any]] = []
    posweb.on("invoice_created")(lambda sender, event, **extra: seen.append(event))
    app.test_client_class = PosWebClient
    response = app.test_client().deliver("invoice_created", key=key)
    assert response.status_code == 200
    assert response.request.path == "/hooks/pos/invoice-created"
    assert seen[0].data["Number"] == "KMG-INV-2026-00412"


def test_a_custom_key_header_is_never_kept(make_app: MakeApp) -> None:
    app = make_app(POSWEB_API_KEY_HEADER="X-DealPOS-Key")
    with captured_events(app) as events:
        response = app.test_client().deliver(  # type: ignore[attr-defined]
            "payment_created", headers={"X-Trace": "t-1", "Cookie": "session=s"}
        )
    assert response.status_code == 200
    assert events[0].headers["X-Trace"] == "t-1"
    assert not {"x-dealpos-key", "cookie"} & {name.lower() for name in events[0].headers}
    from flask_posweb.state import get_state

    (stored,) = get_state(app).require_inbox().deliveries()
    assert "X-Dealpos-Key" not in stored.headers and "X-Trace" in stored.headers
