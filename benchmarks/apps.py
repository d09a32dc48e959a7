"""The apps compared, side by side, in every benchmark.

Without an inbox:

- ``bare``: a Flask route that parses the JSON and answers ``{"status": "success"}``.
- ``handwritten``: what a user would write instead of Flask-PosWeb: the same marshmallow
  schema loaded in a plain view, an API key compared in constant time, one receiver called.
- ``posweb``: the Flask-PosWeb endpoint for ``payment_created``, one receiver, no inbox.

Storing before the 200 (``<store>`` is ``sqlite`` or ``postgresql``):

- ``floor_<store>``: the *durable floor*, the least a store-then-ack receiver can do:
  parse, then one insert committed to disk (SQLite: WAL, ``synchronous=FULL``, under a
  lock file, as the inbox writes; PostgreSQL: one transaction on a kept connection). No
  authentication, validation or dispatch.
- ``posweb_<store>_worker``: Flask-PosWeb storing only (``POSWEB_DISPATCH = "worker"``).
- ``posweb_<store>_inline``: the default mode: store, run the receiver, record its outcome.
- ``posweb_<store>_celery``: store, then publish a Celery task (Redis broker).
- ``posweb_<store>_<mode>_merchants``: the same, for :data:`MERCHANTS` merchants, each
  with its own key, looked up in an SQLAlchemy table of key digests (as the example
  shop keeps them), cached by Flask-PosWeb.

Select with ``BENCH_VARIANT``; SQLite files go in ``BENCH_DIR``, PostgreSQL is
``BENCH_DATABASE_URL`` and the Celery broker ``BENCH_BROKER_URL``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hmac
import json
import os
import sqlite3
import threading
import time
import typing as t

from flask import Flask
from flask import jsonify
from flask import request
from marshmallow import ValidationError

from flask_posweb import PosWeb
from flask_posweb.schemas import InvoicePaymentSchema

API_KEY = "bench-key-0123456789"
STORES = ("sqlite", "postgresql")
MODES = ("worker", "inline", "celery")
#: Merchants of the ``_merchants`` variants.
MERCHANTS = 1000


def merchant_key(n: int) -> str:
    """The API key of merchant ``n`` (the load generator knows them too)."""
    return f"merchant-{n:04d}-key-0123456789"


def receiver(*args: t.Any, **kwargs: t.Any) -> None:
    """The one receiver every variant calls: does nothing, so only the library is measured."""


def bare() -> Flask:
    app = Flask(__name__)

    @app.post("/dealpos/payment-created")
    def payment_created() -> t.Any:
        request.get_json()
        return jsonify(status="success")

    return app


def handwritten() -> Flask:
    app = Flask(__name__)
    schema = InvoicePaymentSchema()

    @app.post("/dealpos/payment-created")
    def payment_created() -> t.Any:
        if not hmac.compare_digest(request.headers.get("X-API-Key", ""), API_KEY):
            return jsonify(status="error"), 401
        try:
            data = schema.load(request.get_json())
        except ValidationError as error:
            return jsonify(status="error", errors=error.messages), 422
        receiver(app, event=data)
        return jsonify(status="success")

    return app


# -- the durable floor -----------------------------------------------------------------


def floor_sqlite(directory: str, holds: list[float] | None = None) -> Flask:
    """Parse, then one synced WAL insert under a lock file.

    :param holds: where to record how long each hold of the lock lasts (seconds).
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "floor.sqlite3")
    local = threading.local()

    def connection() -> tuple[sqlite3.Connection, int]:
        if getattr(local, "pid", None) != os.getpid():
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS floor "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, raw BLOB, received_at TEXT)"
            )
            local.db, local.lock = db, os.open(path + "-lock", os.O_RDWR | os.O_CREAT, 0o600)
            local.pid = os.getpid()
        return local.db, local.lock

    app = Flask(__name__)

    @app.post("/dealpos/payment-created")
    def payment_created() -> t.Any:
        raw = request.get_data()
        json.loads(raw)
        db, lock = connection()
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.perf_counter()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO floor (raw, received_at) VALUES (?, ?)", (raw, now))
            db.execute("COMMIT")
        finally:
            if holds is not None:
                holds.append(time.perf_counter() - started)
            fcntl.flock(lock, fcntl.LOCK_UN)
        return jsonify(status="success")

    return app


def floor_postgresql(url: str) -> Flask:
    """Parse, then one insert in a transaction of its own (synchronous commit)."""
    import psycopg

    local = threading.local()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)

    def connection() -> psycopg.Connection[t.Any]:
        if getattr(local, "pid", None) != os.getpid():
            local.db, local.pid = psycopg.connect(conninfo), os.getpid()
        return t.cast("psycopg.Connection[t.Any]", local.db)

    with psycopg.connect(conninfo) as db, db.transaction():
        # Workers booting together would race in CREATE TABLE IF NOT EXISTS.
        db.execute("SELECT pg_advisory_xact_lock(7)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor "
            "(id BIGSERIAL PRIMARY KEY, raw BYTEA, received_at TIMESTAMP)"
        )
    app = Flask(__name__)

    @app.post("/dealpos/payment-created")
    def payment_created() -> t.Any:
        raw = request.get_data()
        json.loads(raw)
        db = connection()
        with db.transaction():
            db.execute("INSERT INTO bench_floor (raw, received_at) VALUES (%s, now())", (raw,))
        return jsonify(status="success")

    return app


# -- Flask-PosWeb ----------------------------------------------------------------------


def posweb(
    inbox: bool,
    directory: str | None = None,
    receivers: int = 1,
    dispatch: str = "inline",
    database_url: str | None = None,
    merchants: int = 0,
) -> Flask:
    app = Flask(__name__, instance_path=directory or os.getcwd())
    app.config.update(
        POSWEB_API_KEYS=[API_KEY],
        POSWEB_INBOX=inbox,
        POSWEB_DISPATCH=dispatch,
        POSWEB_DATABASE_URL=database_url,
    )
    if "BENCH_POLL_INTERVAL" in os.environ:  # how soon an idle worker looks again
        app.config["POSWEB_POLL_INTERVAL"] = float(os.environ["BENCH_POLL_INTERVAL"])
    extension = PosWeb()
    if merchants:
        extension.credentials(merchant_lookup(directory or os.getcwd(), merchants))
    for n in range(receivers):
        extension.on("payment_created")(_numbered(n))
    app.register_blueprint(extension.blueprint, url_prefix="/dealpos")
    if dispatch == "celery":
        celery_init_app(app, os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
    return app


def merchant_lookup(directory: str, count: int) -> t.Callable[..., t.Any]:
    """Flask-PosWeb's credentials lookup over a table of ``count`` merchants'
    key digests (SQLAlchemy, SQLite), made and filled on first use."""
    import sqlalchemy as sa

    from flask_posweb.auth import CredentialQuery
    from flask_posweb.auth import Credentials
    from flask_posweb.auth import hashed

    metadata = sa.MetaData()
    keys = sa.Table(
        "merchant_keys",
        metadata,
        sa.Column("digest", sa.String(80), primary_key=True),
        sa.Column("merchant", sa.String(64), nullable=False, index=True),
    )
    engine = sa.create_engine(f"sqlite:///{os.path.join(directory, 'merchants.sqlite3')}")
    with engine.begin() as connection:
        metadata.create_all(connection)
        if connection.execute(sa.select(sa.func.count()).select_from(keys)).scalar() < count:
            connection.execute(keys.delete())
            rows = [
                {"digest": hashed(merchant_key(n)), "merchant": f"m{n:04d}"} for n in range(count)
            ]
            connection.execute(keys.insert(), rows)

    def lookup(query: CredentialQuery) -> Credentials | None:
        if query.kind == "api_key":
            whose = sa.select(keys.c.merchant).where(keys.c.digest == f"sha256:{query.id}")
        elif query.kind == "merchant":
            whose = sa.select(keys.c.merchant).where(keys.c.merchant == query.id)
        else:
            return None
        with engine.connect() as connection:
            name = connection.execute(whose).scalar()
            if name is None:
                return None
            digests = connection.execute(
                sa.select(keys.c.digest).where(keys.c.merchant == name)
            ).scalars()
            return Credentials(name, api_keys=list(digests))

    return lookup


def _numbered(n: int) -> t.Callable[..., None]:
    def numbered(*args: t.Any, **kwargs: t.Any) -> None:
        pass

    numbered.__qualname__ = f"receiver_{n}"  # distinct names, as real receivers have
    return numbered


def celery_init_app(app: Flask, broker: str) -> t.Any:
    """Flask's own pattern for Celery (tasks in the app context)."""
    from celery import Celery
    from celery import Task

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(broker_url=broker, task_ignore_result=True, worker_prefetch_multiplier=16)
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def create_app(variant: str | None = None, directory: str | None = None) -> Flask:
    """The app of one variant (gunicorn: ``benchmarks.apps:create_app()``)."""
    variant = variant or os.environ["BENCH_VARIANT"]
    directory = directory or os.environ.get("BENCH_DIR") or os.getcwd()
    pg = os.environ.get("BENCH_DATABASE_URL")
    if variant == "bare":
        return bare()
    if variant == "handwritten":
        return handwritten()
    if variant == "posweb":
        return posweb(inbox=False)
    kind, store, *mode = variant.split("_")
    if store not in STORES or (store == "postgresql" and not pg):
        raise ValueError(f"Unknown benchmark variant {variant!r} (BENCH_DATABASE_URL set?)")
    if kind == "floor":
        return floor_sqlite(directory) if store == "sqlite" else floor_postgresql(t.cast(str, pg))
    url = f"sqlite:///{os.path.join(directory, 'posweb.sqlite3')}" if store == "sqlite" else pg
    merchants = MERCHANTS if mode[1:] == ["merchants"] else 0
    return posweb(
        inbox=True, directory=directory, dispatch=mode[0], database_url=url, merchants=merchants
    )
