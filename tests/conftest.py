"""Shared fixtures.

Store tests run on SQLite, and also on PostgreSQL when
``POSWEB_TEST_DATABASE_URL`` names a server (``.ci/run`` starts one).
"""

from __future__ import annotations

import os
import pathlib
import threading
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.database import deliveries
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

HERE = pathlib.Path(__file__).parent
PG_URL = os.environ.get("POSWEB_TEST_DATABASE_URL")
DATABASES = ["sqlite", *(["postgresql"] if PG_URL else [])]

MakeApp = Callable[..., Flask]


def payload_bytes(name: str) -> bytes:
    """The exact bytes of a payload in ``tests/payloads``."""
    return (HERE / "payloads" / f"{name}.json").read_bytes()


def reset_postgresql(url: str) -> None:
    """Drop the inbox table of the test server (shared by every test; it is created again)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            if sa.inspect(connection).has_table(deliveries.name):
                connection.execute(sa.text(f"DROP TABLE {deliveries.name}"))
    finally:
        engine.dispose()


def run_together(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """The inbox database of a store test: SQLite, then PostgreSQL when available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    assert PG_URL is not None
    reset_postgresql(PG_URL)
    return PG_URL


@pytest.fixture
def posweb() -> PosWeb:
    """A fresh extension: its receivers reach only the apps of this test."""
    return PosWeb()


@pytest.fixture
def make_app(tmp_path: pathlib.Path, posweb: PosWeb) -> Iterator[MakeApp]:
    """Build apps with ``posweb`` registered; each is closed after the test."""
    apps: list[Flask] = []

    def make(**config: t.Any) -> Flask:
        app = Flask(__name__, instance_path=str(tmp_path / f"instance{len(apps)}"))
        app.config.update(
            TESTING=True,
            POSWEB_API_KEYS=["test-key"],
            POSWEB_DATABASE_URL=f"sqlite:///{tmp_path / f'inbox{len(apps)}.sqlite3'}",
        )
        app.config.update(config)
        app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
        app.test_client_class = PosWebClient
        apps.append(app)
        return app

    yield make
    for app in apps:
        if "posweb" in app.extensions:
            get_state(app).close()


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> PosWebClient:
    return t.cast(PosWebClient, app.test_client())
