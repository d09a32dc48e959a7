"""The pytest plugin: fixtures for testing an app that receives DealPOS webhooks.

Installed with Flask-PosWeb (entry point ``pytest11``); the fixtures need an
``app`` fixture of your own, as pytest-flask's do::

    @pytest.fixture
    def app() -> Flask:
        return create_app({"TESTING": True})

    def test_write_off(posweb_client: PosWebClient, posweb_events: CapturedEvents) -> None:
        response = posweb_client.deliver("payment_written_off")
        assert response.status_code == 200
        assert posweb_events[0].data["TagID"] == "t-rounding"

With ``TESTING`` on and no ``POSWEB_DATABASE_URL``, each app object has an
inbox of its own in a temporary file, and no background thread runs: tests
never touch the developer's inbox, and run again the same way.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from .testing import CapturedEvents
from .testing import PosWebClient
from .testing import captured_events

__all__ = ["posweb_client", "posweb_events"]


@pytest.fixture
def posweb_client(app: Flask) -> PosWebClient:
    """A test client that posts as DealPOS does (``deliver``, ``call_loyalty``),
    with the app's own credentials."""
    return PosWebClient(app, app.response_class)


@pytest.fixture
def posweb_events(app: Flask) -> Iterator[CapturedEvents]:
    """Every event the app dispatches during the test, in order."""
    with captured_events(app) as events:
        yield events
