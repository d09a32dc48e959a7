"""No dispatcher marks a delivery done with receivers it does not have.

Inbox 0.2, finding 5: in 0.1 app B's worker claimed app A's delivery, ran
none of A's receivers and marked it processed; so did a worker whose app
factory had not imported the receiver modules.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import textwrap
import typing as t

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.dispatch.receivers import receiver_name
from flask_posweb.dispatch.runner import report_lacking
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import drain

from .conftest import KEY

SHOP = """
from flask import Flask
from flask_posweb import PosWeb

posweb = PosWeb()
RAN = []


@posweb.on("payment_created")
def ledger(sender, event, **extra):
    RAN.append((__name__, event.id))


def create_app(database_url, dispatch="worker"):
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        POSWEB_API_KEYS=["test-key-0123456789"],
        POSWEB_DATABASE_URL=database_url,
        POSWEB_DISPATCH=dispatch,
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    return app
"""


def make(posweb: PosWeb, database_url: str, **config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        POSWEB_API_KEYS=[KEY],
        POSWEB_DATABASE_URL=database_url,
        POSWEB_DISPATCH="worker",
        **config,
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    app.test_client_class = PosWebClient
    return app


@pytest.fixture
def apps() -> t.Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        get_state(app).close()


def test_two_apps_on_one_database_never_finish_each_others_deliveries(
    database_url: str, apps: list[Flask]
) -> None:
    posweb_a, posweb_b = PosWeb(), PosWeb()
    ran: list[str] = []
    posweb_a.on("payment_created", name="ledger")(lambda sender, event, **extra: ran.append("a"))
    posweb_b.on("payment_created", name="mailer")(lambda sender, event, **extra: ran.append("b"))
    app_a, app_b = make(posweb_a, database_url), make(posweb_b, database_url)
    apps += [app_a, app_b]
    response = app_a.test_client().deliver("payment_created")  # type: ignore[attr-defined]
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    assert drain(app_b) == 0  # B has none of A's receivers: it leaves the delivery
    delivery = get_state(app_a).require_inbox().get(delivery_id)
    assert delivery is not None and delivery.status == "pending"
    assert drain(app_a) == 1 and ran == ["a"]
    assert drain(app_a) == drain(app_b) == 0 and ran == ["a"]  # once


def test_nothing_depends_on_the_import_name(
    tmp_path: pathlib.Path, database_url: str, apps: list[Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web tier loads the shop as ``app``, the worker as ``shop.app``."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(textwrap.dedent(SHOP))
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    web_module = importlib.import_module("app")
    worker_module = importlib.import_module("shop.app")
    try:
        assert web_module is not worker_module
        web, worker = web_module.create_app(database_url), worker_module.create_app(database_url)
        apps += [web, worker]
        client = PosWebClient(web)
        response = client.deliver("payment_created")
        assert response.status_code == 200
        assert drain(worker) == 1
        assert worker_module.RAN == [("shop.app", int(response.headers["X-PosWeb-Delivery"]))]
        assert web_module.RAN == []
    finally:
        sys.modules.pop("app", None)
        sys.modules.pop("shop.app", None)
        sys.modules.pop("shop", None)


def test_a_worker_without_the_receivers_says_so_and_leaves_the_deliveries(
    database_url: str, apps: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    with_receivers, without = PosWeb(), PosWeb()
    with_receivers.on("payment_created", name="ledger")(lambda sender, event, **extra: None)
    web, worker = make(with_receivers, database_url), make(without, database_url)
    apps += [web, worker]
    for n in range(3):
        web.test_client().deliver("payment_created", {"ID": f"p{n}", **_payment()})  # type: ignore[attr-defined]
    lines = report_lacking(get_state(worker).require_dispatcher())
    assert lines == [
        "3 payment_created deliveries expect receivers this process lacks (ledger); "
        "they are left for a dispatcher that has them, and marked stranded if none shows "
        "within POSWEB_STRANDED_AFTER (to run them with this app's receivers: flask posweb "
        "replay --adopt --status pending --status failed --event payment_created)."
    ]
    assert lines[0] in caplog.text
    result = worker.test_cli_runner().invoke(args=["posweb", "worker", "--once"])
    assert "Warning: 3 payment_created deliveries expect receivers" in result.stderr
    assert result.stdout.strip() == "0 deliveries dispatched."
    assert get_state(web).require_inbox().counts()["pending"] == 3
    assert drain(web) == 3


def test_inbox_names_keep_apps_apart(database_url: str, apps: list[Flask]) -> None:
    posweb = PosWeb()
    seen: list[str] = []
    posweb.on("payment_created")(lambda sender, event, **extra: seen.append(sender.name))
    shop = make(posweb, database_url, POSWEB_INBOX_NAME="shop")
    warehouse = make(posweb, database_url, POSWEB_INBOX_NAME="warehouse")
    apps += [shop, warehouse]
    shop.name, warehouse.name = "shop", "warehouse"
    for app in (shop, warehouse):  # the same body to both: not a duplicate across inboxes
        assert app.test_client().deliver("payment_created").status_code == 200  # type: ignore[attr-defined]
    assert [d.inbox for d in get_state(shop).require_inbox().deliveries()] == ["shop"]
    assert get_state(warehouse).require_inbox().counts()["pending"] == 1
    assert drain(shop) == 1 and seen == ["shop"]
    assert drain(warehouse) == 1 and seen == ["shop", "warehouse"]


def test_receiver_names_leave_out_the_module() -> None:
    def record(sender: Flask, event: t.Any, **extra: t.Any) -> None: ...

    assert receiver_name(record) == "test_receiver_names_leave_out_the_module.<locals>.record"
    PosWeb().on("payment_created", name="ledger")(record)
    assert receiver_name(record) == "ledger"


def _payment() -> dict[str, t.Any]:
    import json

    from flask_posweb.sending import sample

    body = json.loads(sample("payment_created"))
    body.pop("ID")
    return t.cast(dict[str, t.Any], body)
