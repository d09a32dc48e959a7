"""The app the fault tests run under real servers (gunicorn, ``flask posweb worker``).

Configured by environment variables so that every process (web workers,
dispatch workers) builds the same app. Its receivers write their side effects
to a separate SQLite file, so the tests can count how often each one ran.
"""

from __future__ import annotations

import os
import sqlite3
import time
import typing as t

from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import WebhookEvent

posweb = PosWeb()


def effect(receiver: str, event: WebhookEvent) -> None:
    """Record that ``receiver`` ran for ``event`` (one row per run, duplicates kept)."""
    with sqlite3.connect(os.environ["FAULT_EFFECTS"], timeout=60) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS effects "
            "(delivery INTEGER, receiver TEXT, attempt INTEGER, pid INTEGER)"
        )
        db.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?)",
            (event.id, receiver, event.attempt, os.getpid()),
        )
    db.close()


@posweb.on("payment_created")
def ledger(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
    effect("ledger", event)


@posweb.on("payment_created")
def mailer(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
    effect("mailer", event)


@posweb.on("shift_closed")
def slow(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
    effect("slow-started", event)
    time.sleep(float(os.environ.get("FAULT_SLOW_SECONDS", "0")))
    effect("slow-finished", event)


@posweb.loyalty.order_complete
def reward(call: t.Any) -> int:
    return int((call.data.get("Sales") or 0) // 1000)


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["FAULT_INSTANCE"])
    app.config.update(
        POSWEB_API_KEYS=["fault-key-0123456789"],
        POSWEB_DATABASE_URL=os.environ["FAULT_DATABASE_URL"],
        POSWEB_DISPATCH=os.environ.get("FAULT_DISPATCH", "worker"),
        POSWEB_LEASE=float(os.environ.get("FAULT_LEASE", "120")),
        POSWEB_POLL_INTERVAL=0.1,
        POSWEB_RETRY_BACKOFF=0.5,
        POSWEB_DATABASE_TIMEOUT=float(os.environ.get("FAULT_TIMEOUT", "30")),
        POSWEB_RETRY_AFTER=3,
    )
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    # What a load balancer asks after a restart: the app's own, not ours.
    app.add_url_rule("/health", "health", lambda: "ok")
    return app
