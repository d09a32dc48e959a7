"""What ``celery -A tests.celery_worker:celery_app worker`` loads: the fault
app in Celery dispatch, as Flask's documentation sets Celery up."""

from __future__ import annotations

from .fault_app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
