"""What counts as a duplicate (see ``flask_posweb/inbox/duplicates.py``), on each database.

Inbox 0.2, finding 1: in 0.1 a body equal to any earlier one was a duplicate
forever, so a product whose stock went 24 -> 23 -> 24 stayed at 23.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb.inbox import Inbox
from flask_posweb.inbox.duplicates import Scope
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import LEDGER
from .conftest import Clock
from .conftest import MakeApp

WINDOW = 600


@pytest.fixture
def windowed(database_url: str, clock: Clock) -> t.Iterator[Inbox]:
    store = Inbox.from_url(database_url, clock=clock, duplicate_window=WINDOW)
    yield store
    store.close()


def admit(inbox: Inbox, body: dict[str, t.Any], resource_key: str | None = "ID") -> t.Any:
    raw = json.dumps(body).encode()
    # Product Updated's resource key is its ID; without one, the window alone decides.
    resource = EVENTS["product_updated"].resource(body) if resource_key else None
    return inbox.admit("product_updated", raw, {}, receivers=LEDGER, resource=resource)


A = {"ID": "p-1", "Stock": 24}
B = {"ID": "p-1", "Stock": 23}


def test_the_same_body_within_the_window_is_one_delivery(windowed: Inbox, clock: Clock) -> None:
    first = admit(windowed, A)
    clock.advance(7)  # DealPOS's own retry
    again = admit(windowed, A)
    assert first.new and not again.new and again.delivery.id == first.delivery.id


def test_a_change_and_back_is_three_deliveries(windowed: Inbox, clock: Clock) -> None:
    ids = []
    for body in (A, B, A):
        admission = admit(windowed, body)
        assert admission.new
        ids.append(admission.delivery.id)
        clock.advance(5)
    assert len(set(ids)) == 3


def test_past_the_window_the_same_body_is_a_new_delivery(windowed: Inbox, clock: Clock) -> None:
    first = admit(windowed, A)
    clock.advance(WINDOW - 1)
    assert not admit(windowed, A).new
    clock.advance(2)  # the window counts from the first arrival, not the repeats
    again = admit(windowed, A)
    assert again.new and again.delivery.id != first.delivery.id


def test_other_resources_in_between_change_nothing(windowed: Inbox, clock: Clock) -> None:
    first = admit(windowed, A)
    admit(windowed, {"ID": "p-2", "Stock": 1})
    assert admit(windowed, A).delivery.id == first.delivery.id


def test_without_a_resource_key_the_window_alone_decides(windowed: Inbox, clock: Clock) -> None:
    first = admit(windowed, A, resource_key=None)
    assert admit(windowed, B, resource_key=None).new
    again = admit(windowed, A, resource_key=None)
    assert not again.new and again.delivery.id == first.delivery.id


def test_a_body_without_its_key_uses_the_window_alone(windowed: Inbox) -> None:
    first = admit(windowed, {"Stock": 24})
    assert not admit(windowed, {"Stock": 24}).new
    assert admit(windowed, {"Stock": 23}).new
    assert admit(windowed, {"Stock": 24}).delivery.id == first.delivery.id


def test_other_events_inboxes_and_merchants_are_other_scopes() -> None:
    raw = b"{}"
    assert Scope.of("default", None, "product_updated", raw, "1") != Scope.of(
        "default", None, "product_created", raw, "1"
    )
    assert Scope.of("a", None, "product_updated", raw, "1") != Scope.of(
        "b", None, "product_updated", raw, "1"
    )
    acme, bravo = (Scope.of("a", m, "product_updated", raw, "1") for m in ("acme", "bravo"))
    assert acme != bravo and None not in (acme.key, bravo.key)
    assert acme != Scope.of("a", None, "product_updated", raw, "1")
    refused = Scope.of("a", None, "e", raw, None, refusal={"_body": ["415"]})
    assert refused.key != Scope.of("a", None, "e", raw, None).key
    assert refused.key != Scope.of("a", None, "e", raw, None, refusal={"_body": ["422"]}).key


def test_the_apps_own_scopes_are_those_of_0_2() -> None:
    """A duplicate window open across the upgrade still holds."""
    import hashlib

    raw = b'{"ID": "p-1"}'
    key = hashlib.sha256(b"default\0product_updated\0resource\0p-1").hexdigest()
    assert Scope.of("default", None, "product_updated", raw, "p-1").key == key


def test_identical_bodies_at_once_on_two_nodes_are_one_delivery(database_url: str) -> None:
    """Two inboxes on one database: two web nodes (or processes), each with its own
    connections and write lock handle."""
    nodes = [Inbox.from_url(database_url) for _ in range(2)]
    try:
        for _ in range(5):  # several rounds, each a race
            body = {"ID": f"p-{threading.get_ident()}-{_}", "Stock": 1}
            results: list[t.Any] = []
            barrier = threading.Barrier(8)

            def post(
                node: Inbox,
                barrier: threading.Barrier = barrier,
                results: list[t.Any] = results,
                body: dict[str, t.Any] = body,
            ) -> None:
                barrier.wait()
                results.append(admit(node, body))

            threads = [threading.Thread(target=post, args=(nodes[n % 2],)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(a.new for a in results) == 1
            assert len({a.delivery.id for a in results}) == 1
    finally:
        for node in nodes:
            node.close()


def test_postgresql_times_are_the_servers(database_url: str) -> None:
    """Leases and windows use the database's clock where it has one."""
    inbox = Inbox.from_url(database_url)
    try:
        statements: list[str] = []
        sa.event.listen(
            inbox.database.engines.durable,
            "before_cursor_execute",
            lambda *a: statements.append(a[2]),
        )
        delivery = admit(inbox, A).delivery
        inserts = [s for s in statements if "INSERT INTO posweb_deliveries" in s]
        server_clock = "now()" in inserts[0]
        assert server_clock == (inbox.database.engines.dialect.name == "postgresql")
        if server_clock:
            with inbox.database.engines.read.connect() as connection:
                now = connection.execute(sa.text("SELECT timezone('UTC', now())")).scalar()
            assert abs(now - delivery.received_at) < dt.timedelta(seconds=30)
    finally:
        inbox.close()


# -- through the app ---------------------------------------------------------------


@pytest.fixture
def stock_app(make_app: MakeApp, database_url: str, posweb: PosWeb) -> tuple[Flask, list[int]]:
    app = make_app(POSWEB_DATABASE_URL=database_url)
    stock: list[int] = []

    @posweb.on("product_updated")
    def update_stock(sender: Flask, event: t.Any, **extra: t.Any) -> None:
        stock.append(event.data["Stock"])

    return app, stock


def test_stock_that_goes_back_reaches_the_host(stock_app: tuple[Flask, list[int]]) -> None:
    app, stock = stock_app
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    for level in (24, 23, 24):
        assert (
            client.deliver(
                "product_updated", {"ID": "p-1", "Name": "Kopi", "Stock": level}
            ).status_code
            == 200
        )
    assert stock == [24, 23, 24]  # 0.1 left it at 23


def test_dealpos_retry_of_the_same_body_is_dispatched_once(
    stock_app: tuple[Flask, list[int]],
) -> None:
    app, stock = stock_app
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    body = {"ID": "p-1", "Name": "Kopi", "Stock": 24}
    first, retry = client.deliver("product_updated", body), client.deliver("product_updated", body)
    assert first.headers["X-PosWeb-Delivery"] == retry.headers["X-PosWeb-Delivery"]
    assert stock == [24]


def test_the_window_is_configurable(make_app: MakeApp, posweb: PosWeb) -> None:
    for window, seconds in (("90s", 90), (dt.timedelta(minutes=2), 120), (30, 30)):
        app = make_app(POSWEB_DUPLICATE_WINDOW=window)
        assert get_state(app).require_inbox().duplicate_window == seconds
