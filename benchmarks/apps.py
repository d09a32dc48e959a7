"""The four apps compared, side by side, in every benchmark.

- ``bare``: a Flask route that parses the JSON and answers ``{"status": "success"}``.
- ``handwritten``: what a user would write instead of Flask-PosWeb: the same marshmallow
  schema loaded in a plain view, an API key compared in constant time, one receiver called.
- ``posweb``: the Flask-PosWeb endpoint for ``payment_created``, one receiver, no inbox.
- ``posweb_sqlite``: the same with the default SQLite inbox (full sync, committed before 200).

Select with ``BENCH_VARIANT``; the inbox lives in ``BENCH_DIR``.
"""

from __future__ import annotations

import hmac
import os
import typing as t

from flask import Flask
from flask import jsonify
from flask import request
from marshmallow import ValidationError

from flask_posweb import PosWeb
from flask_posweb.schemas import InvoicePaymentSchema

API_KEY = "bench-key-0123456789"
VARIANTS = ("bare", "handwritten", "posweb", "posweb_sqlite")


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


def posweb(
    inbox: bool, directory: str | None = None, receivers: int = 1, dispatch: str = "inline"
) -> Flask:
    app = Flask(__name__, instance_path=directory or os.getcwd())
    app.config.update(POSWEB_API_KEYS=[API_KEY], POSWEB_INBOX=inbox, POSWEB_DISPATCH=dispatch)
    extension = PosWeb()
    for n in range(receivers):
        extension.on("payment_created")(_numbered(n))
    app.register_blueprint(extension.blueprint, url_prefix="/dealpos")
    return app


def _numbered(n: int) -> t.Callable[..., None]:
    def numbered(*args: t.Any, **kwargs: t.Any) -> None:
        pass

    numbered.__qualname__ = f"receiver_{n}"  # distinct names, as real receivers have
    return numbered


def create_app(variant: str | None = None, directory: str | None = None) -> Flask:
    """The app of one variant (gunicorn: ``benchmarks.apps:create_app()``)."""
    variant = variant or os.environ["BENCH_VARIANT"]
    directory = directory or os.environ.get("BENCH_DIR")
    if variant == "bare":
        return bare()
    if variant == "handwritten":
        return handwritten()
    if variant == "posweb_sqlite_worker":
        return posweb(inbox=True, directory=directory, dispatch="worker")
    return posweb(inbox=variant == "posweb_sqlite", directory=directory)
