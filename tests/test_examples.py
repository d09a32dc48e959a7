"""The example shop receives every event and answers every loyalty call."""

from __future__ import annotations

import importlib.util
import pathlib
import typing as t
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
    page = t.cast(dict[str, t.Any], client.get("/").json)
    assert sorted(row["event"] for row in page["received"]) == sorted(EVENTS)
    assert page["inbox"]["processed"] == len(EVENTS)
    payment = next(row for row in page["received"] if row["event"] == "payment_created")
    assert payment["summary"] == "KMG-PAY-2026-00388, Kemang, amount 75240"


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
