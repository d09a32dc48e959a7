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
from flask_posweb.dispatch import runner

if "FAULT_SETTLE_DELAY" in os.environ:  # how long a request's outcome may wait unwritten
    runner.SETTLE_DELAY = float(os.environ["FAULT_SETTLE_DELAY"])
    # and no retention pass, whose writes would carry it sooner
    runner.Runner.housekeep = lambda self, force=False: {}  # type: ignore[method-assign]

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
    if event.attempt == 1:  # slow the first time only: a retry finishes
        time.sleep(float(os.environ.get("FAULT_SLOW_SECONDS", "0")))
    effect("slow-finished", event)


@posweb.loyalty.order_complete
def reward(call: t.Any) -> int:
    return int((call.data.get("Sales") or 0) // 1000)


def celery_init_app(app: Flask) -> t.Any:
    """Flask's own pattern for Celery: tasks run in the app context, and the
    Celery app is kept in ``app.extensions["celery"]``."""
    from celery import Celery
    from celery import Task

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["FAULT_INSTANCE"])
    app.config.update(
        POSWEB_API_KEYS=["fault-key-0123456789"],
        POSWEB_DATABASE_URL=os.environ["FAULT_DATABASE_URL"],
        POSWEB_DISPATCH=os.environ.get("FAULT_DISPATCH", "worker"),
        # As the environment gives it, a number in a string: seconds.
        POSWEB_LEASE=os.environ.get("FAULT_LEASE", "120"),
        POSWEB_POLL_INTERVAL=0.1,
        POSWEB_RETRY_BACKOFF=0.5,
        POSWEB_DATABASE_TIMEOUT=float(os.environ.get("FAULT_TIMEOUT", "30")),
        POSWEB_RETRY_AFTER=3,
        POSWEB_CELERY_REQUEUE_AFTER=float(os.environ.get("FAULT_REQUEUE_AFTER", "5")),
    )
    if os.environ.get("FAULT_METRICS"):  # tests/test_telemetry.py scrapes <prefix>/metrics
        app.config.update(POSWEB_METRICS=["prometheus"], POSWEB_METRICS_PATH="/metrics")
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    if app.config["POSWEB_DISPATCH"] == "celery":  # set up after the blueprint, as users may
        app.config.update(
            CELERY={
                "broker_url": os.environ["FAULT_BROKER"],
                "task_ignore_result": True,
                # The broker's own redelivery of a dead worker's tasks: an hour.
                # The tests show the relay does it within the lease instead.
                "broker_transport_options": {"visibility_timeout": 3600},
                "broker_connection_retry_on_startup": True,
            },
        )
        celery_init_app(app)
    # What a load balancer asks after a restart: the app's own, not ours.
    app.add_url_rule("/health", "health", lambda: "ok")
    return app
