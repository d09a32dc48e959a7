"""What ``celery -A make_celery worker`` loads, run from ``examples/shop`` with
``SHOP_CELERY_BROKER`` set: the shop in Celery dispatch, its Celery app made
by Flask's pattern (see ``celery_init_app`` in ``app.py``).

The worker imports the module that creates the Flask app, and with it every
receiver: Flask-PosWeb's task runs them in this app's context.
"""

from __future__ import annotations

import os

from app import create_app

if not os.environ.get("SHOP_CELERY_BROKER"):
    raise SystemExit(
        "Set SHOP_CELERY_BROKER to the broker's URL, e.g. redis://127.0.0.1:6379/0, "
        "for the Celery worker and for gunicorn alike."
    )

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
