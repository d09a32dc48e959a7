"""Many merchants, one app: every delivery knows which DealPOS shop sent it.

Both layouts (a URL per merchant, and one URL for all with the merchant said by
the credential), on SQLite and PostgreSQL: whose key is accepted where, what is
per merchant (duplicates, loyalty answers, fairness), credentials from the
host's own store (rotation, revocation, the cache), hostile names.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import re
import threading
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import signals
from flask_posweb.auth import CredentialQuery
from flask_posweb.auth import Credentials
from flask_posweb.auth import hashed
from flask_posweb.dispatch.runner import Runner
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox.tables import deliveries
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals

from .conftest import KEY
from .conftest import run_together
from .servers import wait_for

ACME = "acme-key-0123456789abcdef"
BRAVO = "bravo-key-0123456789abcdef"
SIGNING = "signing-key-0123456789abcdef"


@dataclasses.dataclass
class Shops:
    """The host's own store of merchants, as a lookup: it counts what it is asked."""

    credentials: dict[str, Credentials] = dataclasses.field(default_factory=dict)
    asked: list[CredentialQuery] = dataclasses.field(default_factory=list)

    def __call__(self, query: CredentialQuery) -> Credentials | None:
        self.asked.append(query)
        if query.kind == "merchant":
            return self.credentials.get(query.id)
        for creds in self.credentials.values():
            if query.kind == "api_key" and hashed_id(query.id) in creds.api_keys:
                return creds
            if query.kind == "api_key" and any(
                hashed(key) == hashed_id(query.id) for key in creds.api_keys
            ):
                return creds
            if query.kind == "basic" and query.id in creds.basic:
                return creds
            if query.kind == "oauth" and query.id in creds.oauth_clients:
                return creds
        return None

    def set(self, merchant: str, **credentials: t.Any) -> None:
        self.credentials[merchant] = Credentials(merchant, **credentials)


def hashed_id(digest_hex: str) -> str:
    return f"sha256:{digest_hex}"


@pytest.fixture
def shops() -> Shops:
    store = Shops()
    store.set("acme", api_keys=[ACME], oauth_clients={"acme-dealpos": "acme-secret-0123456789"})
    store.set("bravo", api_keys=[hashed(BRAVO)])  # the host keeps only the digest
    return store


Layout = t.Literal["url", "credential"]
MakeShopApp = Callable[..., Flask]


@pytest.fixture
def make_shop_app(tmp_path: t.Any, database_url: str, shops: Shops) -> Iterator[MakeShopApp]:
    apps: list[Flask] = []

    def make(layout: Layout = "url", posweb: PosWeb | None = None, **config: t.Any) -> Flask:
        posweb = posweb or PosWeb()
        posweb.credentials(shops)
        app = Flask(__name__, instance_path=str(tmp_path / f"instance{len(apps)}"))
        app.config.update(TESTING=True, POSWEB_DATABASE_URL=database_url, **config)
        prefix = "/dealpos/<merchant>" if layout == "url" else "/dealpos"
        app.register_blueprint(posweb.blueprint, url_prefix=prefix)
        app.test_client_class = PosWebClient
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_state(app).close()


def client_of(app: Flask) -> PosWebClient:
    return t.cast(PosWebClient, app.test_client())


def stored(app: Flask) -> list[t.Any]:
    return get_state(app).require_inbox().deliveries(limit=None)


# -- who may post where -------------------------------------------------------------


def test_a_merchants_key_is_a_401_at_another_merchants_url(
    make_shop_app: MakeShopApp, shops: Shops
) -> None:
    app = make_shop_app("url")
    client = client_of(app)
    refused = client.deliver("payment_created", key=ACME, merchant="bravo")
    assert refused.status_code == 401 and refused.is_json
    assert stored(app) == []  # nothing stored, not even as rejected
    assert client.deliver("payment_created", key=BRAVO, merchant="bravo").status_code == 200
    assert client.deliver("payment_created", key=ACME, merchant="acme").status_code == 200
    assert {d.merchant for d in stored(app)} == {"acme", "bravo"}


def test_by_credential_the_key_says_whose_delivery_it_is(
    make_shop_app: MakeShopApp, shops: Shops
) -> None:
    posweb = PosWeb()
    seen: list[tuple[str | None, str | None]] = []

    @posweb.on("payment_created")
    def record(sender: Flask, event: t.Any, merchant: str | None) -> None:
        seen.append((event.merchant, merchant))

    app = make_shop_app("credential", posweb, POSWEB_API_KEYS=[KEY])
    client = client_of(app)
    for key in (ACME, BRAVO, KEY):
        body = sample("payment_created").replace(b'"ID": "', f'"ID": "{key[:4]}'.encode())
        assert client.deliver("payment_created", body, key=key).status_code == 200
    assert seen == [("acme", "acme"), ("bravo", "bravo"), (None, None)]  # KEY: the app's own
    assert sorted(d.merchant or "-" for d in stored(app)) == ["-", "acme", "bravo"]
    assert client.deliver("payment_created", key="nobody-0123456789abcdef").status_code == 401


def test_the_apps_own_key_is_no_merchants(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url", POSWEB_API_KEYS=[KEY])
    assert client_of(app).deliver("payment_created", key=KEY, merchant="acme").status_code == 401


def test_a_url_per_merchant_needs_a_credentials_lookup(tmp_path: t.Any) -> None:
    from flask_posweb import ConfigurationError

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(TESTING=True, POSWEB_API_KEYS=[KEY])
    with pytest.raises(ConfigurationError, match="no credentials lookup"):
        app.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos/<merchant>")
    other = Flask(__name__, instance_path=str(tmp_path))
    other.config.update(TESTING=True, POSWEB_API_KEYS=[KEY])
    with pytest.raises(ConfigurationError, match="only variable it may name is <merchant>"):
        other.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos/<shop>")


@pytest.mark.parametrize(
    "path",
    [
        "/dealpos/" + "a" * 65 + "/payment-created",  # too long for a name
        "/dealpos/../payment-created",
        "/dealpos/%2e%2e/payment-created",
        "/dealpos/acme%2Fbravo/payment-created",
        "/dealpos/%00acme/payment-created",
        "/dealpos/acme%20bravo/payment-created",
        "/dealpos/%C3%BCnicode/payment-created",
        "/dealpos/-acme/payment-created",
        "/dealpos/acme./payment-created",
        "/dealpos/%E2%80%AEacme/payment-created",  # a right-to-left override
    ],
)
def test_hostile_merchant_names_are_refused_before_any_lookup(
    make_shop_app: MakeShopApp, shops: Shops, path: str
) -> None:
    app = make_shop_app("url")
    response = client_of(app).post(
        path,
        data=sample("payment_created"),
        headers={"X-API-Key": ACME},
        content_type="application/json",
    )
    assert response.status_code in (404, 401, 308), response.status_code
    assert response.is_json and response.json["status"] == "error"
    assert shops.asked == []  # never looked up
    assert stored(app) == []


def test_an_unknown_merchant_is_looked_up_once_per_ttl(
    make_shop_app: MakeShopApp, shops: Shops
) -> None:
    """A negative cache: an unknown merchant sending again costs no query."""
    app = make_shop_app("url")
    client = client_of(app)
    for _ in range(5):
        assert client.deliver("payment_created", key=ACME, merchant="nobody").status_code == 401
    assert shops.asked == [CredentialQuery("merchant", "nobody")]
    by_key = make_shop_app("credential")
    shops.asked.clear()
    for _ in range(5):
        response = client_of(by_key).deliver("payment_created", key="unknown-0123456789abcdef")
        assert response.status_code == 401
    assert len(shops.asked) == 1 and shops.asked[0].kind == "api_key"


# -- rotation and revocation, without a restart -----------------------------------------


def test_a_rotation_and_a_revocation_take_effect_within_the_ttl(
    make_shop_app: MakeShopApp, shops: Shops
) -> None:
    app = make_shop_app("url", POSWEB_CREDENTIALS_TTL="1m")
    client = client_of(app)
    cache = get_state(app).authenticator.lookup  # type: ignore[union-attr]
    now = [1000.0]
    cache.clock = lambda: now[0]  # type: ignore[union-attr]
    new_key = "acme-new-key-0123456789ab"
    assert client.deliver("payment_created", key=ACME, merchant="acme").status_code == 200
    shops.set("acme", api_keys=[ACME, new_key])  # a rotation begins: both live
    now[0] += 61
    assert client.deliver("invoice_created", key=new_key, merchant="acme").status_code == 200
    assert client.deliver("shift_closed", key=ACME, merchant="acme").status_code == 200
    shops.set("acme", api_keys=[new_key])  # the old key revoked
    now[0] += 30
    assert client.deliver("product_created", key=ACME, merchant="acme").status_code == 200
    now[0] += 31  # past the TTL
    assert client.deliver("customer_created", key=ACME, merchant="acme").status_code == 401
    assert client.deliver("supplier_created", key=new_key, merchant="acme").status_code == 200


def test_a_lookup_that_fails_is_a_503_that_dealpos_retries(
    make_shop_app: MakeShopApp, shops: Shops
) -> None:
    app = make_shop_app("url")

    def broken(query: CredentialQuery) -> Credentials | None:
        raise RuntimeError("the shop's database is down")

    get_state(app).authenticator.lookup.lookup = broken  # type: ignore[union-attr]
    response = client_of(app).deliver("payment_created", key=ACME, merchant="acme")
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert "database is down" not in response.get_data(as_text=True)


# -- what is per merchant -----------------------------------------------------------


@pytest.mark.parametrize("layout", ["url", "credential"])
def test_the_same_bytes_from_two_merchants_are_two_deliveries(
    make_shop_app: MakeShopApp, layout: Layout
) -> None:
    """0.2: a second merchant's byte-identical body was a duplicate, never dispatched."""
    posweb = PosWeb()
    dispatched: list[str | None] = []
    lock = threading.Lock()

    @posweb.on("product_created")
    def record(sender: Flask, event: t.Any, **extra: t.Any) -> None:
        with lock:
            dispatched.append(event.merchant)

    app = make_shop_app(layout, posweb)
    body = sample("product_created")
    senders = [("acme", ACME), ("bravo", BRAVO)] * 2  # each merchant twice, all at once
    at_once = iter(senders)

    def post() -> None:
        merchant, key = next(at_once)
        where = merchant if layout == "url" else None
        assert (
            client_of(app).deliver("product_created", body, key=key, merchant=where).status_code
            == 200
        )

    run_together(post, len(senders))
    assert sorted(dispatched, key=str) == ["acme", "bravo"]  # each dispatched once
    assert sorted(d.merchant for d in stored(app)) == ["acme", "bravo"]


def test_loyalty_answers_are_per_merchant(make_shop_app: MakeShopApp) -> None:
    """0.2: shop B's order-complete for an order ID shop A had used got A's answer."""
    posweb = PosWeb()
    asked: list[str | None] = []

    @posweb.loyalty.order_complete
    def reward(call: t.Any) -> int:
        asked.append(call.merchant)
        return 5 if call.merchant == "acme" else 7

    app = make_shop_app("url", posweb)
    client = client_of(app)
    order = json.loads(sample("loyalty_order_complete"))
    answers = {
        merchant: client.call_loyalty("order_complete", order, key=key, merchant=merchant)
        for merchant, key in (("acme", ACME), ("bravo", BRAVO))
    }
    assert answers["acme"].json == {"reward": 5} and answers["bravo"].json == {"reward": 7}
    again = client.call_loyalty("order_complete", order, key=ACME, merchant="acme")
    assert again.json == {"reward": 5}  # remembered: acme's order is rewarded once
    assert asked == ["acme", "bravo"]
    remembered = get_state(app).require_inbox().answers.recent()
    assert sorted(a.merchant for a in remembered) == ["acme", "bravo"]


def test_a_token_of_merchant_a_is_refused_at_b(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url", POSWEB_OAUTH_SIGNING_KEY=SIGNING)
    client = client_of(app)
    import base64

    basic = base64.b64encode(b"acme-dealpos:acme-secret-0123456789").decode()
    response = client.post(
        "/dealpos/acme/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.json
    bearer = {"Authorization": f"Bearer {response.json['access_token']}"}
    assert client.deliver("payment_created", headers=bearer, merchant="acme").status_code == 200
    assert client.deliver("invoice_created", headers=bearer, merchant="bravo").status_code == 401
    # acme's client is no client at bravo's token URL either.
    elsewhere = client.post(
        "/dealpos/bravo/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert elsewhere.status_code == 401
    assert [d.merchant for d in stored(app)] == ["acme"]


def test_signals_name_the_merchant_to_receivers_that_take_it(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url")
    with captured_signals(app, signals.webhook_received, signals.webhook_rejected) as sent:
        client = client_of(app)
        client.deliver("payment_created", key=ACME, merchant="acme")
        client.deliver("payment_created", b"{}", key=ACME, merchant="acme")  # a 422
    # captured_signals' recorder takes **kwargs: it gets the merchant.
    assert [(s.name, s.kwargs["merchant"]) for s in sent] == [
        ("webhook_received", "acme"),
        ("webhook_rejected", "acme"),
    ]
    assert [d.status for d in stored(app)] == ["rejected", "unhandled"]  # no receivers
    assert {d.merchant for d in stored(app)} == {"acme"}


def test_a_receiver_written_before_merchants_keeps_working(make_shop_app: MakeShopApp) -> None:
    posweb = PosWeb()
    calls: list[str] = []

    @posweb.on("payment_created")
    def old_style(sender: Flask, event: t.Any) -> None:  # no merchant, no **extra
        calls.append(event.name)

    app = make_shop_app("url", posweb)
    assert client_of(app).deliver("payment_created", key=ACME, merchant="acme").status_code == 200
    assert calls == ["payment_created"]
    assert stored(app)[0].status == "processed"


# -- fairness ---------------------------------------------------------------------


def _pile(inbox: Inbox, merchant: str, count: int, receivers: str) -> None:
    """``count`` pending deliveries of ``merchant``, in one transaction."""
    now = dt.datetime(2026, 1, 1)
    rows = [
        {
            "inbox": inbox.name, "merchant": merchant, "event": "product_created",
            "status": "pending", "raw": sample("product_created"), "headers": {},
            "receiver_set": receivers, "outcomes": [], "attempts": 0, "generation": 0,
            "replay": False, "received_at": now, "updated_at": now, "next_attempt_at": now,
        }
        for _ in range(count)
    ]  # fmt: skip
    inbox.database.write(lambda connection: connection.execute(deliveries.insert(), rows))


def test_one_merchants_backlog_does_not_starve_the_others(make_shop_app: MakeShopApp) -> None:
    """Merchant A re-syncs 5,000 products; B's one payment is dispatched within a few."""
    posweb = PosWeb()
    order: list[str | None] = []
    posweb.on("product_created")(lambda sender, event, **extra: order.append(event.merchant))
    posweb.on("payment_created")(lambda sender, event, **extra: order.append(event.merchant))
    app = make_shop_app("url", posweb, POSWEB_DISPATCH="worker")
    dispatcher = get_state(app).require_dispatcher()
    inbox = dispatcher.inbox
    client = client_of(app)
    client.deliver("product_created", key=ACME, merchant="acme")  # registers the receiver set
    (first,) = stored(app)
    _pile(inbox, "acme", 5000, t.cast(str, first.receiver_set))
    assert client.deliver("payment_created", key=BRAVO, merchant="bravo").status_code == 200
    Runner(dispatcher, "runner").drain(limit=60)
    assert "bravo" in order[:3], order[:5]
    # Celery mode's relay sends in turns too: bravo's task is in the first batch.
    relayed = inbox.take_for_relay(dispatcher.acceptable(), requeue_after=60, limit=10)
    assert len(relayed) == 10  # acme's next ten (bravo is done)
    assert inbox.counts(Filter(merchant="acme"))["pending"] == 5001 - 59


def test_the_relay_takes_merchants_in_turn(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url", POSWEB_DISPATCH="worker")
    dispatcher = get_state(app).require_dispatcher()
    client = client_of(app)
    client.deliver("product_created", key=ACME, merchant="acme")
    (first,) = stored(app)
    _pile(dispatcher.inbox, "acme", 2000, t.cast(str, first.receiver_set))
    client.deliver("product_created", key=BRAVO, merchant="bravo")
    taken = dispatcher.inbox.take_for_relay(dispatcher.acceptable(), requeue_after=60, limit=5)
    merchants = collections.Counter(merchant for _, merchant in taken)
    assert merchants["bravo"] == 1 and merchants["acme"] == 4


# -- a per-merchant limit -------------------------------------------------------------


def test_a_merchant_past_its_limit_gets_a_429_that_dealpos_retries(
    make_shop_app: MakeShopApp,
) -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = make_shop_app("url", POSWEB_MERCHANT_RATE_LIMIT="2 per minute")
    Limiter(get_remote_address, app=app, storage_uri="memory://")
    client = client_of(app)
    statuses = [
        client.deliver("product_created", {"ID": f"p{n}"}, key=ACME, merchant="acme").status_code
        for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = client.deliver("product_created", {"ID": "p9"}, key=ACME, merchant="acme")
    assert refused.json["status"] == "error" and int(refused.headers["Retry-After"]) >= 1
    # Per merchant, not per address: bravo posts from the same host, untouched.
    assert (
        client.deliver("product_created", {"ID": "b1"}, key=BRAVO, merchant="bravo").status_code
        == 200
    )
    assert len(stored(app)) == 3


# -- for operators --------------------------------------------------------------------


def test_events_prints_a_merchants_urls(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["posweb", "events", "--merchant", "acme", "--base-url", "https://hooks.example"]
    )
    assert result.exit_code == 0, result.output
    assert "https://hooks.example/dealpos/acme/payment-created" in result.stdout
    missing = runner.invoke(args=["posweb", "events", "--base-url", "https://hooks.example"])
    assert missing.exit_code == 2 and "--merchant NAME" in missing.output
    bad = runner.invoke(args=["posweb", "events", "--merchant", "../x"])
    assert bad.exit_code == 2 and "not a merchant's name" in bad.output


def test_merchants_lists_counts_and_the_oldest_waiting(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app("url", POSWEB_DISPATCH="worker")
    client = client_of(app)
    client.deliver("payment_created", key=ACME, merchant="acme")
    client.deliver("invoice_created", key=BRAVO, merchant="bravo")
    client.deliver("shift_closed", key=BRAVO, merchant="bravo")
    result = app.test_cli_runner().invoke(args=["posweb", "merchants", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["merchant"]: row for row in json.loads(result.stdout)}
    assert rows["acme"]["counts"]["pending"] == 1 and rows["bravo"]["counts"]["pending"] == 2
    assert rows["acme"]["oldest_waiting"] is not None
    listed = app.test_cli_runner().invoke(args=["posweb", "list", "--merchant", "bravo", "--json"])
    assert {d["merchant"] for d in json.loads(listed.stdout)} == {"bravo"}
    table = app.test_cli_runner().invoke(args=["posweb", "merchants"])
    assert table.stdout.splitlines()[0].startswith("merchant") and "acme" in table.stdout


def test_the_openapi_document_names_the_merchant_in_the_path(make_shop_app: MakeShopApp) -> None:
    from flask_posweb.openapi import openapi_document

    document = openapi_document(make_shop_app("url"))
    path = document["paths"]["/dealpos/{merchant}/payment-created"]
    (parameter,) = path["parameters"]
    assert parameter["name"] == "merchant" and parameter["in"] == "path"
    assert parameter["schema"]["pattern"].startswith("^[A-Za-z0-9]")


def test_celery_tasks_carry_the_merchant_for_the_hosts_router(make_shop_app: MakeShopApp) -> None:
    """Celery mode routes per merchant if the host wants: the task's ``merchant``
    keyword (and a ``posweb_merchant`` header) reach its ``task_routes``."""
    from celery import Celery

    routed: list[tuple[str, dict[str, t.Any]]] = []

    def route(
        name: str, args: t.Any, kwargs: dict[str, t.Any], options: t.Any, **kw: t.Any
    ) -> t.Any:
        routed.append((name, kwargs))
        return {"queue": f"merchant-{kwargs.get('merchant') or 'own'}"}

    celery_app = Celery("routing", broker="memory://", task_routes=(route,))
    app = make_shop_app("url", POSWEB_DISPATCH="celery", POSWEB_CELERY_APP=celery_app)
    assert client_of(app).deliver("payment_created", key=ACME, merchant="acme").status_code == 200
    # The request only queued its task: the publishing thread sends it.
    wait_for(lambda: routed, 10, "the task to be routed")
    assert routed == [("flask_posweb.dispatch", {"merchant": "acme"})]


def test_the_log_page_filters_and_counts_by_merchant(make_shop_app: MakeShopApp) -> None:
    app = make_shop_app(
        "url",
        SECRET_KEY="dashboard-secret-0123456789",
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=lambda: True,
    )
    client = client_of(app)
    client.deliver("payment_created", key=ACME, merchant="acme")
    client.deliver("invoice_created", key=BRAVO, merchant="bravo")
    every = client.get("/dealpos/log/").get_data(as_text=True)
    assert 'aria-label="Deliveries by merchant"' in every and ">acme <span" in every
    acme = client.get("/dealpos/log/?merchant=acme").get_data(as_text=True)
    listed = re.findall(r'<td data-label="Merchant">([^<]*)</td>', acme)
    events = re.findall(r'<td data-label="Event"><a [^>]*>([^<]*)</a>', acme)
    assert listed == ["acme"] and events == ["Payment Created"]
    refused = client.get("/dealpos/log/?merchant=../etc")
    assert refused.status_code == 400 and "not a merchant&#39;s name" in refused.get_data(
        as_text=True
    )


def test_a_store_row_with_no_merchant_reads_as_none(database_url: str) -> None:
    inbox = Inbox.from_url(database_url)
    try:
        inbox.counts()
        inbox.database.write(
            lambda c: c.execute(
                sa.text(
                    "INSERT INTO posweb_deliveries (inbox, event, status, raw, headers, outcomes,"
                    " attempts, generation, replay, received_at, updated_at)"
                    " VALUES ('default', 'shift_closed', 'processed', :raw, '{}', '[]', 1, 0,"
                    " false, :now, :now)"
                ),
                {"raw": b"{}", "now": dt.datetime(2026, 1, 1)},
            )
        )
        (row,) = inbox.deliveries()
        assert row.merchant is None  # stored as "" (the default): the app's own
        assert inbox.merchants()[0].merchant is None
    finally:
        inbox.close()
