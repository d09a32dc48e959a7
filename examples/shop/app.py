"""A shop that receives every DealPOS event and answers DealPOS's loyalty calls.

Run it with ``make run`` (or ``flask --app examples/shop/app.py run``), then, in
another terminal, post the built-in sample of any event as DealPOS would::

    flask --app examples/shop/app.py posweb send payment_created

Open http://127.0.0.1:5000/ to see what arrived, and the delivery log page
(http://127.0.0.1:5000/dealpos/log/) to see every delivery: run the app with
``--debug`` (``make run`` does), as the page admits only this machine, and
only in debug mode. A body with ``"ShopFail": "until-replay"`` makes the
shop's ledger fail until someone replays the delivery from that page (with
``"always"``: on every attempt), to show a traceback and a replay::

    flask --app examples/shop/app.py posweb send payment_created examples/shop/failing_payment.json

Everything lives in the instance folder: the inbox (``posweb.sqlite3``,
embedded, zero configuration) and the shop's own records, loyalty points and
merchants (``shop.sqlite3``).

Many merchants: the shop's own key is for the shop itself; the DealPOS shops
it serves each get keys of their own (``flask --app examples/shop/app.py shop
add-merchant acme``), kept as digests in a table of the shop's database and
looked up at each request (see ``merchants.py``). Each delivery names its
merchant (``event.merchant``), and loyalty points are per merchant.

With ``SHOP_CELERY_BROKER`` set (``redis://127.0.0.1:6379/0``), receivers run in
Celery workers (``POSWEB_DISPATCH = "celery"``), set up as Flask's documentation
sets Celery up: run ``celery -A make_celery worker`` and ``gunicorn -w 2 -k
gthread --threads 8 'app:create_app()'`` from this folder (see the README's
"Celery mode", and docs/deploying.rst for why threads).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import typing as t
from decimal import Decimal

# A sibling module: flask --app examples/shop/app.py, celery and gunicorn (run
# from this folder) all put the app's folder on sys.path.
import merchants  # noqa: E402
from flask import Flask
from flask import current_app
from flask import g
from flask import render_template_string
from flask import request
from flask import url_for

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.loyalty import Coupon
from flask_posweb.loyalty import CouponRefused
from flask_posweb.loyalty import LoyaltyCall

posweb = PosWeb()
# The merchants' credentials, in the shop's own table (see merchants.py).
posweb.credentials(merchants.credentials)
log = logging.getLogger("shop")

SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    delivery_id INTEGER, event TEXT NOT NULL, summary TEXT NOT NULL, received_at TEXT NOT NULL,
    merchant TEXT NOT NULL DEFAULT '', UNIQUE (delivery_id, event)
);
CREATE TABLE IF NOT EXISTS member_points (
    merchant TEXT NOT NULL DEFAULT '', member TEXT NOT NULL, points INTEGER NOT NULL,
    PRIMARY KEY (merchant, member)
);
CREATE TABLE IF NOT EXISTS coupons (
    key TEXT PRIMARY KEY, type TEXT NOT NULL, amount TEXT NOT NULL, expires TEXT,
    used INTEGER NOT NULL
);
INSERT OR IGNORE INTO member_points VALUES ('', '081234567890', 1208);
INSERT OR IGNORE INTO coupons VALUES
    ('WELCOME10', 'percentageDiscount', '10', '2027-12-31T23:59:59', 0);
INSERT OR IGNORE INTO coupons VALUES ('SORRY25K', 'value', '25000', NULL, 1);
"""


def shop_db() -> sqlite3.Connection:
    """The shop's own database (not the inbox), one connection per app context."""
    if "shop_db" not in g:
        g.shop_db = sqlite3.connect(current_app.config["SHOP_DATABASE"], timeout=10)
        g.shop_db.executescript(SCHEMA)
        columns = [row[1] for row in g.shop_db.execute("PRAGMA table_info(received)")]
        if "merchant" not in columns:  # a shop database of Flask-PosWeb 0.2's example
            g.shop_db.execute("ALTER TABLE received ADD COLUMN merchant TEXT NOT NULL DEFAULT ''")
    return t.cast(sqlite3.Connection, g.shop_db)


def summarize(event: WebhookEvent) -> str:
    """A one-line description of a delivery for the log and the page."""
    data = event.data
    parts = [str(data[key]) for key in ("Number", "Name", "Outlet") if data.get(key)]
    if isinstance(data.get("Amount"), Decimal):
        parts.append(f"amount {data['Amount']}")
    return ", ".join(parts) or f"{len(data)} fields"


def record(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
    """Every event: log it and keep a line about it (once per delivery, even on replays)."""
    summary = summarize(event)
    whose = f" from {event.merchant}" if event.merchant else ""
    log.info("%s #%s%s: %s", event.name, event.id, whose, summary)
    with shop_db() as db:
        db.execute(
            "INSERT OR IGNORE INTO received VALUES (?, ?, ?, ?, ?)",
            (
                event.id,
                event.name,
                summary,
                event.received_at.isoformat(timespec="seconds"),
                event.merchant or "",
            ),
        )


class LedgerUnavailable(Exception):
    """The shop's accounting ledger did not take the entry (made up: see ``post_to_ledger``)."""


def post_to_ledger(sender: Flask, event: WebhookEvent, **extra: t.Any) -> None:
    """Every event: post it to the shop's ledger, which fails when the body asks for it.

    ``"ShopFail": "until-replay"`` fails until an operator replays the delivery
    from the log page; ``"always"`` fails on every attempt (until it is dead).
    """
    fail = event.data.get("ShopFail")
    if fail == "always" or (fail == "until-replay" and not event.is_replay):
        raise LedgerUnavailable(f"The ledger refused {event.name} #{event.id} (ShopFail={fail!r}).")


for _name in EVENTS:
    posweb.on(_name)(record)
    posweb.on(_name, name="ledger")(post_to_ledger)


def member_key(data: dict[str, t.Any]) -> str:
    return str(data.get("Phone") or data.get("Mobile") or data.get("Code") or "")


@posweb.loyalty.member_points
def member_points(call: LoyaltyCall) -> int:
    row = shop_db().execute(
        "SELECT points FROM member_points WHERE merchant = ? AND member = ?",
        (call.merchant or "", member_key(call.data)),
    )
    found = row.fetchone()
    return found[0] if found else 0


@posweb.loyalty.order_complete
def order_complete(call: LoyaltyCall) -> int:
    """One point per 1,000 of sales, credited to the merchant's customer (once per order)."""
    reward = int((call.data.get("Sales") or 0) // 1000)
    member = member_key(call.data.get("Customer") or {})
    if member:
        with shop_db() as db:
            db.execute(
                "INSERT INTO member_points VALUES (?, ?, ?) "
                "ON CONFLICT (merchant, member) DO UPDATE SET points = points + excluded.points",
                (call.merchant or "", member, reward),
            )
    return reward


@posweb.loyalty.validate_coupon
def validate_coupon(call: LoyaltyCall) -> Coupon | CouponRefused:
    row = (
        shop_db()
        .execute(
            "SELECT type, amount, expires, used FROM coupons WHERE key = ?", (call.data["Key"],)
        )
        .fetchone()
    )
    if row is None:
        return CouponRefused("Unknown coupon.", status="invalid")
    kind, amount, expires, used = row
    expires_at = dt.datetime.fromisoformat(expires) if expires else None
    if used:
        return CouponRefused("This coupon has been used already.", expires_at=expires_at)
    return Coupon(kind, Decimal(amount), expires_at=expires_at)


#: This machine's own names, with any port: the Host of a request from ``make run``'s browser.
LOCAL_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


def local_debugging() -> bool:
    """Who may see the delivery log page: only this machine, and only in debug
    mode, so that a copy of this app in production admits no one. A real shop
    checks its own users, e.g. ``lambda: current_user.is_admin``.

    The address alone is not enough: a page on another site can make its own
    name resolve to 127.0.0.1 (DNS rebinding), and its script then reads this
    page from this machine's browser, with that name in ``Host``. So the Host
    must be one of this machine's names too.
    """
    return (
        current_app.debug
        and request.remote_addr in ("127.0.0.1", "::1")
        and LOCAL_HOST.fullmatch(request.host.lower()) is not None
    )


INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example shop</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 0 1rem; max-width: 60rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #d5dae0; }
  .table { overflow-x: auto; }
</style>
</head>
<body>
<header><p><strong>Example shop</strong>: it receives every DealPOS event.</p></header>
<main>
{% set own = "the shop's own" %}
<h1>What arrived</h1>
<p>{% if log_page %}Every delivery, with its receivers' attempts and a replay button, is on
  <a href="{{ log_page }}">the delivery log page</a> (this machine only, in debug mode).
  {% else %}The delivery log page is off.{% endif %}</p>
<h2>Inbox</h2>
<ul>{% for status, n in counts.items() %}
  <li>{{ status }}: <span id="count-{{ status }}">{{ n }}</span></li>{% endfor %}
</ul>
<h2>Received, newest first</h2>
{% if received %}
<div class="table"><table>
  <thead><tr>
    <th scope="col">Delivery</th><th scope="col">Event</th><th scope="col">Summary</th>
    <th scope="col">Merchant</th><th scope="col">Received (UTC)</th>
  </tr></thead>
  <tbody>
  {% for id, event, summary, at, merchant in received %}
    <tr><td>{{ id }}</td><td>{{ event }}</td><td>{{ summary }}</td><td>{{ merchant or own }}</td>
      <td>{{ at }}</td></tr>
  {% endfor %}
  </tbody>
</table></div>
{% else %}
<p>Nothing yet: <code>flask --app examples/shop/app.py posweb send payment_created</code></p>
{% endif %}
<h2>Loyalty points</h2>
<div class="table"><table>
  <thead><tr><th scope="col">Merchant</th><th scope="col">Member</th>
    <th scope="col">Points</th></tr></thead>
  <tbody>{% for merchant, member, n in points %}
    <tr><td>{{ merchant or own }}</td><td>{{ member }}</td><td>{{ n }}</td></tr>{% endfor %}
  </tbody>
</table></div>
</main>
</body>
</html>
"""


def celery_init_app(app: Flask) -> t.Any:
    """Flask's own pattern for Celery: tasks run in the app context, and the
    Celery app is kept in ``app.extensions["celery"]``, where Flask-PosWeb looks."""
    from celery import Celery  # the 'celery' extra: imported in this mode only
    from celery import Task

    class FlaskTask(Task):
        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY", "dev-only-change-me"),
        # The key DealPOS sends in X-API-Key; set SHOP_API_KEY in production.
        POSWEB_API_KEYS=[os.environ.get("SHOP_API_KEY", "dev-key-change-me")],
        SHOP_DATABASE=os.path.join(app.instance_path, "shop.sqlite3"),
        # The delivery log page at /dealpos/log/ (the 'dashboard' extra).
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=local_debugging,
    )
    broker = os.environ.get("SHOP_CELERY_BROKER")
    if broker:
        app.config.update(
            POSWEB_DISPATCH="celery",
            CELERY={
                "broker_url": broker,
                "task_ignore_result": True,  # the inbox keeps every outcome
                # Tasks acknowledge late: each pool process reserves one at a
                # time, so a worker that dies holds few others back (the relay
                # sends them again after POSWEB_CELERY_REQUEUE_AFTER).
                "worker_prefetch_multiplier": 1,
                "broker_connection_retry_on_startup": True,
            },
        )
    app.config.update(config or {})
    # The shop's own database needs its folder (the inbox makes its own).
    os.makedirs(os.path.dirname(os.path.abspath(app.config["SHOP_DATABASE"])), exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if app.config.get("POSWEB_DISPATCH") == "celery":
        celery_init_app(app)  # before or after the blueprint: looked up when first needed
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    merchants.init_app(app)  # flask shop add-merchant, add-key, revoke-key, merchants

    @app.teardown_appcontext
    def close_shop_db(_exc: BaseException | None) -> None:
        db = g.pop("shop_db", None)
        if db is not None:
            db.close()

    @app.get("/")
    def index() -> str:
        """What arrived, newest first, and the loyalty points."""
        received = shop_db().execute(
            "SELECT delivery_id, event, summary, received_at, merchant FROM received "
            "ORDER BY rowid DESC LIMIT 100"
        )
        points = shop_db().execute(
            "SELECT merchant, member, points FROM member_points ORDER BY merchant, member"
        )
        log_page = None
        if "posweb_dashboard" in app.blueprints:
            log_page = url_for("posweb_dashboard.deliveries")
        return render_template_string(
            INDEX,
            received=received.fetchall(),
            points=points.fetchall(),
            counts=posweb.inbox.counts(),
            log_page=log_page,
        )

    return app
