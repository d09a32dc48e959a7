"""A shop that receives every DealPOS event and answers DealPOS's loyalty calls.

Run it with ``make run`` (or ``flask --app examples/shop/app.py run``), then, in
another terminal, post the built-in sample of any event as DealPOS would::

    flask --app examples/shop/app.py posweb send payment_created

Open http://127.0.0.1:5000/ to see what arrived. Everything lives in the
instance folder: the inbox (``posweb.sqlite3``, embedded, zero configuration)
and the shop's own records and loyalty points (``shop.sqlite3``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import typing as t
from decimal import Decimal

from flask import Flask
from flask import current_app
from flask import g
from flask import jsonify

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.loyalty import Coupon
from flask_posweb.loyalty import CouponRefused
from flask_posweb.loyalty import LoyaltyCall

posweb = PosWeb()
log = logging.getLogger("shop")

SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    delivery_id INTEGER, event TEXT NOT NULL, summary TEXT NOT NULL, received_at TEXT NOT NULL,
    UNIQUE (delivery_id, event)
);
CREATE TABLE IF NOT EXISTS points (member TEXT PRIMARY KEY, points INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS coupons (
    key TEXT PRIMARY KEY, type TEXT NOT NULL, amount TEXT NOT NULL, expires TEXT,
    used INTEGER NOT NULL
);
INSERT OR IGNORE INTO points VALUES ('081234567890', 1208);
INSERT OR IGNORE INTO coupons VALUES
    ('WELCOME10', 'percentageDiscount', '10', '2027-12-31T23:59:59', 0);
INSERT OR IGNORE INTO coupons VALUES ('SORRY25K', 'value', '25000', NULL, 1);
"""


def shop_db() -> sqlite3.Connection:
    """The shop's own database (not the inbox), one connection per app context."""
    if "shop_db" not in g:
        g.shop_db = sqlite3.connect(current_app.config["SHOP_DATABASE"], timeout=10)
        g.shop_db.executescript(SCHEMA)
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
    log.info("%s #%s: %s", event.name, event.id, summary)
    with shop_db() as db:
        db.execute(
            "INSERT OR IGNORE INTO received VALUES (?, ?, ?, ?)",
            (event.id, event.name, summary, event.received_at.isoformat(timespec="seconds")),
        )


for _name in EVENTS:
    posweb.on(_name)(record)


def member_key(data: dict[str, t.Any]) -> str:
    return str(data.get("Phone") or data.get("Mobile") or data.get("Code") or "")


@posweb.loyalty.member_points
def member_points(call: LoyaltyCall) -> int:
    row = shop_db().execute("SELECT points FROM points WHERE member = ?", (member_key(call.data),))
    found = row.fetchone()
    return found[0] if found else 0


@posweb.loyalty.order_complete
def order_complete(call: LoyaltyCall) -> int:
    """One point per 1,000 of sales, credited to the customer (once per order)."""
    reward = int((call.data.get("Sales") or 0) // 1000)
    member = member_key(call.data.get("Customer") or {})
    if member:
        with shop_db() as db:
            db.execute(
                "INSERT INTO points VALUES (?, ?) "
                "ON CONFLICT (member) DO UPDATE SET points = points + excluded.points",
                (member, reward),
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


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY", "dev-only-change-me"),
        # The key DealPOS sends in X-API-Key; set SHOP_API_KEY in production.
        POSWEB_API_KEYS=[os.environ.get("SHOP_API_KEY", "dev-key-change-me")],
        SHOP_DATABASE=os.path.join(app.instance_path, "shop.sqlite3"),
    )
    app.config.update(config or {})
    os.makedirs(app.instance_path, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")

    @app.teardown_appcontext
    def close_shop_db(_exc: BaseException | None) -> None:
        db = g.pop("shop_db", None)
        if db is not None:
            db.close()

    @app.get("/")
    def index() -> t.Any:
        """What arrived, newest first, and the loyalty points."""
        rows = shop_db().execute(
            "SELECT delivery_id, event, summary, received_at FROM received "
            "ORDER BY rowid DESC LIMIT 100"
        )
        points = shop_db().execute("SELECT member, points FROM points ORDER BY member")
        return jsonify(
            received=[
                dict(zip(("id", "event", "summary", "received_at"), row, strict=True))
                for row in rows
            ],
            points=dict(points.fetchall()),
            inbox=posweb.inbox.counts(),
        )

    return app
