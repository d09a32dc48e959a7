"""The example shop receives every event and answers every loyalty call."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

ROOT = pathlib.Path(__file__).parent.parent


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / name / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # As an import would: Flask finds the app's folder (and instance folder)
    # through sys.modules, or else takes the current directory, the clone.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shop_module() -> ModuleType:
    return load_example("shop")


@pytest.fixture
def shop(shop_module: ModuleType, tmp_path: pathlib.Path) -> Iterator[Flask]:
    app: Flask = shop_module.create_app(
        {
            "TESTING": True,
            "POSWEB_DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
            "SHOP_DATABASE": str(tmp_path / "shop.sqlite3"),
        }
    )
    app.test_client_class = PosWebClient
    yield app
    get_state(app).close()


def test_the_shop_records_every_event(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    for name in EVENTS:
        assert client.deliver(name).status_code == 200, name
    page = client.get("/")
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    shown = re.findall(r"<tr><td>(\d+)</td><td>(\w+)</td><td>([^<]*)</td>", html)
    assert sorted(event for _, event, _ in shown) == sorted(EVENTS)
    assert f'<span id="count-processed">{len(EVENTS)}</span>' in html
    payment = next(summary for _, event, summary in shown if event == "payment_created")
    assert payment == "KMG-PAY-2026-00388, Kemang, amount 75240"
    assert '<a href="/dealpos/log/">the delivery log page</a>' in html


def test_the_log_page_admits_only_this_machine_in_debug_mode(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    shop.config["DEBUG"] = False  # a copy of the shop in production: no one
    assert client.get("/dealpos/log/").status_code == 403
    shop.config["DEBUG"] = True
    assert client.get("/dealpos/log/").status_code == 200  # the test client is 127.0.0.1
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/dealpos/log/", environ_base=elsewhere).status_code == 403


def test_the_shop_ledger_fails_when_asked_until_a_replay(shop: Flask) -> None:
    shop.config["DEBUG"] = True
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    # The file the shop's docstring sends.
    body = (ROOT / "examples" / "shop" / "failing_payment.json").read_bytes()
    delivery_id = client.deliver("payment_created", body).headers["X-PosWeb-Delivery"]
    page = client.get(f"/dealpos/log/{delivery_id}").get_data(as_text=True)
    assert "LedgerUnavailable: The ledger refused payment_created" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    replayed = client.post(
        f"/dealpos/log/{delivery_id}/replay", data={"csrf_token": token.group(1)}
    )
    assert "the delivery is now processed" in replayed.get_data(as_text=True)
    always = {**json.loads(body), "ID": "p-always", "ShopFail": "always"}
    again = client.deliver("payment_created", always).headers["X-PosWeb-Delivery"]
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get(f"/dealpos/log/{again}").get_data(True)
    )
    assert token is not None
    response = client.post(f"/dealpos/log/{again}/replay", data={"csrf_token": token.group(1)})
    assert "the delivery is now failed" in response.get_data(as_text=True)


def test_the_shop_answers_every_loyalty_call(shop: Flask) -> None:
    client: PosWebClient = shop.test_client()  # type: ignore[assignment]
    assert client.call_loyalty("member_points").json == {"Point": 1208}
    assert client.call_loyalty("order_complete").json == {"reward": 68}
    assert client.call_loyalty("order_complete").json == {"reward": 68}  # once per order
    assert client.call_loyalty("member_points").json == {"Point": 1276}
    assert client.call_loyalty("validate_coupon").status_code == 200
    used = client.call_loyalty("validate_coupon", {"Key": "SORRY25K", "Outlet": "Kemang"})
    assert used.status_code == 400 and used.json["status"] == "used"
    unknown = client.call_loyalty("validate_coupon", {"Key": "NOPE"})
    assert unknown.status_code == 400 and unknown.json["status"] == "invalid"
