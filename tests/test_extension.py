"""The extension object: registration, configuration, subscriptions."""

from __future__ import annotations

import gc
import typing as t

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import UnknownEventError
from flask_posweb import WebhookEvent
from flask_posweb import signals
from flask_posweb.config import DEFAULTS
from flask_posweb.exceptions import ConfigurationError
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import MakeApp


def deliver(app: Flask, name: str = "payment_created") -> int:
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    return client.deliver(name).status_code


def test_registering_the_blueprint_sets_everything_up(app: Flask) -> None:
    assert isinstance(app.extensions["posweb"], type(get_state(app)))
    for key, value in DEFAULTS.items():
        if key not in ("POSWEB_API_KEYS", "POSWEB_DATABASE_URL"):
            assert app.config[key] == value
    assert "posweb" in app.blueprints


def test_a_factory_makes_independent_apps(make_app: MakeApp, posweb: PosWeb) -> None:
    seen: list[tuple[Flask, WebhookEvent]] = []

    @posweb.on("payment_created")
    def record(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        seen.append((sender, event))

    first, second = make_app(), make_app()
    assert deliver(first) == deliver(second) == 200
    assert [sender for sender, _ in seen] == [first, second]


def test_each_extension_reaches_only_its_apps(make_app: MakeApp, tmp_path: t.Any) -> None:
    own = make_app()
    other_app = Flask(__name__, instance_path=str(tmp_path / "other"))
    other_app.config.update(POSWEB_API_KEYS=["test-key-0123456789"], TESTING=True)
    other = PosWeb(other_app)
    other_app.test_client_class = PosWebClient
    calls: list[str] = []
    other.on("payment_created")(lambda sender, event, **extra: calls.append("other"))
    assert deliver(own) == 200
    assert calls == []
    assert deliver(other_app) == 200
    assert calls == ["other"]
    get_state(other_app).close()


def test_receivers_may_be_added_after_setup(app: Flask, posweb: PosWeb) -> None:
    calls: list[str] = []
    posweb.on("invoice_created")(lambda sender, event, **extra: calls.append(event.name))
    assert deliver(app, "invoice_created") == 200
    assert calls == ["invoice_created"]


def test_receivers_are_held_strongly(make_app: MakeApp, posweb: PosWeb) -> None:
    calls: list[str] = []

    def subscribe() -> None:
        @posweb.on("payment_created")
        def inner(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
            calls.append(event.name)

    subscribe()
    gc.collect()
    assert deliver(make_app()) == 200
    assert calls == ["payment_created"]


def test_on_returns_the_function_unchanged(posweb: PosWeb) -> None:
    def handler(sender: Flask, **extra: t.Any) -> None: ...

    assert posweb.on("payment_written_off")(handler) is handler
    assert posweb.on("webhook_dead")(handler) is handler


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("payment_create", "'payment_created'"),
        ("paymentWriteoff", None),
        ("invoice_creatd", "'invoice_created'"),
        ("webhook_recieved", "'webhook_received'"),
    ],
)
def test_unknown_names_fail_at_decoration_with_a_suggestion(
    posweb: PosWeb, name: str, suggestion: str | None
) -> None:
    with pytest.raises(UnknownEventError) as error:
        posweb.on(name)
    assert "flask posweb events" in str(error.value)
    if suggestion:
        assert f"Did you mean {suggestion}" in str(error.value)


def test_module_level_signals_work_too(app: Flask) -> None:
    calls: list[Flask] = []

    @signals.payment_written_off.connect_via(app)
    def written_off(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
        calls.append(sender)

    try:
        assert deliver(app, "payment_written_off") == 200
    finally:
        signals.payment_written_off.disconnect(written_off, sender=app)
    assert calls == [app]


def test_a_second_extension_on_one_app_is_refused(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="already set up"):
        app.register_blueprint(PosWeb().blueprint, name="posweb2", url_prefix="/other")


def test_state_of_an_app_without_the_blueprint() -> None:
    with pytest.raises(RuntimeError, match="register_blueprint"):
        get_state(Flask(__name__))


def test_a_blueprint_registered_under_another_name_works_throughout(
    posweb: PosWeb, tmp_path: t.Any
) -> None:
    """``register_blueprint(..., name="shop")`` renames every endpoint (and the
    CLI group): nothing may assume ``posweb.``."""
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        TESTING=True,
        SECRET_KEY="signing-key-0123456789",
        POSWEB_API_KEYS=[],
        POSWEB_OAUTH_CLIENTS={"dealpos": "client-secret-0123456789"},
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/pos", name="shop")
    app.test_client_class = PosWebClient
    try:
        client: PosWebClient = app.test_client()  # type: ignore[assignment]
        assert client.deliver("payment_created").status_code == 200  # token URL, then the event
        listed = app.test_cli_runner().invoke(args=["shop", "events", "--base-url", "http://x"])
        assert listed.exit_code == 0, listed.output
        assert "http://x/pos/payment-created" in listed.output
        assert "http://x/pos/oauth/token" in listed.output
    finally:
        get_state(app).close()


def test_urls_need_no_request_the_app_would_refuse(posweb: PosWeb, tmp_path: t.Any) -> None:
    """The test client, ``events`` and ``send`` build paths from the URL map: an
    ``APPLICATION_ROOT`` is added once (by the client), and ``TRUSTED_HOSTS``
    without ``localhost`` refuses nothing they do."""
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        TESTING=True,
        POSWEB_API_KEYS=["test-key-0123456789"],
        APPLICATION_ROOT="/app",
        TRUSTED_HOSTS=["shop.example"],
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    app.test_client_class = PosWebClient
    try:
        client: PosWebClient = app.test_client()  # type: ignore[assignment]
        response = client.deliver("payment_created")
        assert response.status_code == 200
        assert response.request.path == "/dealpos/payment-created"  # below the root
        assert response.request.root_path == "/app"
        runner = app.test_cli_runner()
        listed = runner.invoke(args=["posweb", "events"])  # no --base-url: a guess
        assert listed.exit_code == 0, listed.output
        assert "http://localhost:5000/dealpos/payment-created" in listed.output
        based = runner.invoke(args=["posweb", "events", "--base-url", "https://shop.example/app"])
        assert "https://shop.example/app/dealpos/payment-created" in based.output
        sent = runner.invoke(
            args=["posweb", "send", "payment_created", "--url", "http://127.0.0.1:9"]
        )
        assert "Could not reach http://127.0.0.1:9/dealpos/payment-created" in sent.output
    finally:
        get_state(app).close()
