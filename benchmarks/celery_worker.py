"""What the benchmark's ``celery worker`` processes load: the Celery variant's app
(``BENCH_VARIANT``, ``BENCH_DIR``, ``BENCH_DATABASE_URL``, ``BENCH_BROKER_URL``)."""

from __future__ import annotations

from .apps import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
